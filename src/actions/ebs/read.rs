use crate::aws::{Answer, RegionClients, failure};
use crate::error::{Error, Result};

use super::kind::EbsEncryptionDefault;

pub(super) async fn read_setting(clients: &RegionClients) -> Result<EbsEncryptionDefault> {
    let out = clients
        .ec2
        .get_ebs_encryption_by_default()
        .send()
        .await
        .or_failure("GetEbsEncryptionByDefault")?;
    // The key is unknown rather than an error where the endpoint cannot say: the
    // emulators do not implement GetEbsDefaultKmsKeyId, and a caller without the right
    // may still turn encryption on. A key asked for then fails its read-back.
    // Not retried: the emulators answer HTTP 500, which the retry policy would back
    // off on for seconds; throttling is still an error.
    let kms_key_id = match clients
        .ec2
        .get_ebs_default_kms_key_id()
        .customize()
        .config_override(
            aws_sdk_ec2::config::Builder::default()
                .retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled()),
        )
        .send()
        .await
    {
        Ok(out) => out.kms_key_id().map(str::to_string),
        Err(e) => {
            let f = failure("GetEbsDefaultKmsKeyId", &e);
            if f.code == "RequestLimitExceeded" {
                return Err(Error::Aws(f));
            }
            tracing::debug!(region = %clients.region, code = %f.code, "the default EBS key cannot be read: {}", f.message);
            None
        }
    };
    Ok(EbsEncryptionDefault {
        region: clients.region.clone(),
        enabled: out.ebs_encryption_by_default().unwrap_or(false),
        kms_key_id,
    })
}
