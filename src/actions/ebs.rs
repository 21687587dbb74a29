//! EBS: the region's encryption-by-default setting (FSBP EC2.7, CIS 2.2.1). With it on,
//! every new volume and snapshot copy in the region is encrypted, with the AWS-managed
//! key unless a default key was set.

use async_trait::async_trait;
use aws_sdk_ec2::operation::RequestId;
use serde_json::{Value, json};

use super::{Action, ActionInfo, ActionPlan, Applied, Calls, ChangeDraft, dry_run_answer};
use crate::aws::{RegionClients, failure};
use crate::error::{AwsFailure, Error, Result};
use crate::inventory::{EbsEncryptionDefault, Resource, ResourceKind};
use crate::plan::{ApiCall, Change, ChangeKind, Probe};

/// Turns EBS encryption by default on.
pub struct EnableEncryptionByDefault;

static ENABLE: ActionInfo = ActionInfo {
    name: "ec2:enable-ebs-encryption-by-default",
    description: "turn on EBS encryption by default in the region (new volumes and snapshot copies are encrypted)",
    resource_kind: ResourceKind::EbsEncryptionDefault,
    args: &[],
    outputs: &[],
    waits: false,
};

fn state(setting: &EbsEncryptionDefault) -> Value {
    serde_json::to_value(setting).unwrap_or_default()
}

impl Action for EnableEncryptionByDefault {
    fn info(&self) -> &'static ActionInfo {
        &ENABLE
    }

    fn plan(&self, target: &Resource, _args: &Value) -> std::result::Result<ActionPlan, String> {
        let Resource::EbsEncryptionDefault(setting) = target else {
            return Err(format!(
                "expected the EBS encryption-by-default setting, given {}",
                target.kind()
            ));
        };
        if setting.enabled {
            return Ok(ActionPlan::default());
        }
        let after = EbsEncryptionDefault {
            enabled: true,
            ..setting.clone()
        };
        Ok(ActionPlan {
            changes: vec![ChangeDraft {
                kind: ChangeKind::Update,
                summary: "enable EBS encryption by default".into(),
                before: state(setting),
                after: state(&after),
                call: ApiCall {
                    service: "ec2".into(),
                    operation: "EnableEbsEncryptionByDefault".into(),
                    input: json!({}),
                },
            }],
            blocked: None,
            projected: Some(Resource::EbsEncryptionDefault(after)),
        })
    }

    fn calls(&self) -> &'static dyn Calls {
        &EbsCalls
    }
}

/// Reads, applies and probes changes to the encryption-by-default setting.
pub struct EbsCalls;

async fn enable(clients: &RegionClients, change: &Change, dry_run: bool) -> Result<Applied> {
    let operation = change.call.operation.as_str();
    if operation != "EnableEbsEncryptionByDefault" {
        return Err(Error::Usage(format!(
            "change {}: operation {operation} is not one an EBS action makes",
            change.id
        )));
    }
    let out = clients
        .ec2
        .enable_ebs_encryption_by_default()
        .dry_run(dry_run)
        .send()
        .await
        .map_err(|e| Error::Aws(failure(operation, &e)))?;
    if out.ebs_encryption_by_default() != Some(true) {
        return Err(Error::Aws(AwsFailure {
            operation: operation.into(),
            code: "ReturnedFalse".into(),
            message: "the service answered without error but reports encryption by default as off"
                .into(),
            request_id: out.request_id().map(str::to_string),
        }));
    }
    Ok(Applied::request(out.request_id()))
}

#[async_trait]
impl Calls for EbsCalls {
    async fn read(&self, clients: &RegionClients, _resource_id: &str) -> Result<Value> {
        Ok(state(&read_setting(clients).await?))
    }

    async fn apply(
        &self,
        clients: &RegionClients,
        change: &Change,
        _current: &Value,
    ) -> Result<Applied> {
        enable(clients, change, false).await
    }

    async fn probe(&self, clients: &RegionClients, change: &Change) -> Probe {
        dry_run_answer(enable(clients, change, true).await)
    }
}

async fn read_setting(clients: &RegionClients) -> Result<EbsEncryptionDefault> {
    let out = clients
        .ec2
        .get_ebs_encryption_by_default()
        .send()
        .await
        .map_err(|e| Error::Aws(failure("GetEbsEncryptionByDefault", &e)))?;
    Ok(EbsEncryptionDefault {
        region: clients.region.clone(),
        enabled: out.ebs_encryption_by_default().unwrap_or(false),
    })
}

/// Discovers the region's setting: one resource whose id is the region.
pub async fn discover(clients: &RegionClients) -> Result<Vec<Resource>> {
    Ok(vec![Resource::EbsEncryptionDefault(
        read_setting(clients).await?,
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_one_call_when_off_and_nothing_when_on() {
        let off = Resource::EbsEncryptionDefault(EbsEncryptionDefault {
            region: "eu-west-1".into(),
            enabled: false,
        });
        let plan = EnableEncryptionByDefault
            .plan(&off, &json!({}))
            .expect("plans");
        assert_eq!(plan.changes.len(), 1);
        assert_eq!(
            plan.changes[0].call.operation,
            "EnableEbsEncryptionByDefault"
        );
        assert_eq!(
            plan.changes[0].before,
            json!({"region": "eu-west-1", "enabled": false})
        );
        assert_eq!(
            plan.changes[0].after,
            json!({"region": "eu-west-1", "enabled": true})
        );
        let Some(projected) = plan.projected else {
            panic!("projects the setting")
        };
        let again = EnableEncryptionByDefault
            .plan(&projected, &json!({}))
            .expect("plans");
        assert_eq!(again, ActionPlan::default());
    }
}
