use crate::aws::{Answer, RegionClients};
use crate::error::Result;

use super::kind::{ConfigRecorder, ConfigSetup, DeliveryChannel};

/// Reads the region's recorder (with its status) and delivery channels.
pub async fn read_setup(clients: &RegionClients) -> Result<ConfigSetup> {
    let config = &clients.config;
    let (recorders, statuses, channels) = tokio::join!(
        config.describe_configuration_recorders().send(),
        config.describe_configuration_recorder_status().send(),
        config.describe_delivery_channels().send(),
    );
    let recorders = recorders.or_failure("DescribeConfigurationRecorders")?;
    let statuses = statuses.or_failure("DescribeConfigurationRecorderStatus")?;
    let channels = channels.or_failure("DescribeDeliveryChannels")?;
    let recorder = recorders.configuration_recorders().first().map(|r| {
        let name = r.name().unwrap_or_default().to_string();
        let status = statuses
            .configuration_recorders_status()
            .iter()
            .find(|s| s.name() == Some(name.as_str()));
        ConfigRecorder {
            role_arn: r.role_arn().unwrap_or_default().to_string(),
            all_supported: r.recording_group().is_some_and(|g| g.all_supported()),
            include_global: r
                .recording_group()
                .is_some_and(|g| g.include_global_resource_types()),
            recording: status.is_some_and(|s| s.recording()),
            last_status: status
                .and_then(|s| s.last_status())
                .map(|s| s.as_str().to_string()),
            name,
        }
    });
    let mut delivery_channels: Vec<DeliveryChannel> = channels
        .delivery_channels()
        .iter()
        .map(|c| DeliveryChannel {
            name: c.name().unwrap_or_default().to_string(),
            bucket: c.s3_bucket_name().unwrap_or_default().to_string(),
        })
        .collect();
    delivery_channels.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(ConfigSetup {
        region: clients.region.clone(),
        recorder,
        delivery_channels,
    })
}
