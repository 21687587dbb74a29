use serde_json::Value;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::actions::{
    Action, ActionInfo, ActionPlan, ArgSpec, Calls, DraftChain, Inverse, NoInput, Resource,
    ResourceKind, api_call, arg, arguments_of, state_of, typed_args,
};
use crate::plan::{ApiCall, ChangeKind};

use super::calls::{EbsCall, EbsCalls, ModifyKeyInput};
use super::kind::EbsEncryptionDefault;

/// Turns EBS encryption by default on.
pub struct EnableEncryptionByDefault;

/// The arguments of `ec2:enable-ebs-encryption-by-default`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnableArgs {
    /// ARN of the KMS key new volumes get by default; empty for the AWS-managed key
    /// (aws/ebs).
    #[serde(default, deserialize_with = "arg::text")]
    pub kms_key_arn: Option<String>,
}

static ENABLE: ActionInfo = ActionInfo {
    name: "ec2:enable-ebs-encryption-by-default",
    description: "turn on EBS encryption by default in the region (new volumes and snapshot copies are encrypted), and set its default KMS key when kms_key_arn is given",
    resource_kind: ResourceKind::EbsEncryptionDefault,
    outputs: &[],
    waits: false,
};

impl Action for EnableEncryptionByDefault {
    fn arguments(&self) -> Vec<ArgSpec> {
        arguments_of::<EnableArgs>()
    }

    fn info(&self) -> &'static ActionInfo {
        &ENABLE
    }

    fn plan(&self, target: &Resource, args: &Value) -> std::result::Result<ActionPlan, String> {
        let Resource::EbsEncryptionDefault(setting) = target else {
            return Err(format!(
                "expected the EBS encryption-by-default setting, given {}",
                target.kind()
            ));
        };
        let key = typed_args::<EnableArgs>(args)?.kms_key_arn;
        if let Some(key) = &key
            && !key.starts_with("arn:")
        {
            return Err(format!(
                "argument kms_key_arn: expected a key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID; the service reads the default key back as an ARN), found {key}"
            ));
        }
        let mut current = setting.clone();
        let mut chain = DraftChain::new("ec2", state_of(&current));
        if !current.enabled {
            current.enabled = true;
            chain.push_call(
                ChangeKind::Update,
                "enable EBS encryption by default".into(),
                state_of(&current),
                &EbsCall::EnableEbsEncryptionByDefault(NoInput {}),
            )?;
        }
        if let Some(key) = key
            && current.kms_key_id.as_deref() != Some(key.as_str())
        {
            let was = match &current.kms_key_id {
                Some(old) => format!("was {old}"),
                None => "the current one could not be read".to_string(),
            };
            current.kms_key_id = Some(key.clone());
            chain.push_call(
                ChangeKind::Update,
                format!("make {key} the default EBS key ({was})"),
                state_of(&current),
                &EbsCall::ModifyEbsDefaultKmsKeyId(ModifyKeyInput { kms_key_id: key }),
            )?;
        }
        Ok(chain.into_plan(Resource::EbsEncryptionDefault(current)))
    }

    fn calls(&self) -> &'static dyn Calls {
        &EbsCalls
    }

    /// Encryption by default is turned off again only if it was off before the run; the
    /// default key is set back to the one read before.
    fn inverse(
        &self,
        call: &ApiCall,
        before: &Value,
        _after: &Value,
    ) -> std::result::Result<Inverse, String> {
        let was: EbsEncryptionDefault = crate::actions::recorded(before, "setting")?;
        match call.operation.as_str() {
            "EnableEbsEncryptionByDefault" if !was.enabled => {
                let undo = api_call("ec2", &EbsCall::DisableEbsEncryptionByDefault(NoInput {}))?;
                Ok(Inverse {
                    kind: ChangeKind::Update,
                    summary: "turn EBS encryption by default off again, as it was before the run"
                        .into(),
                    operation: undo.operation,
                    input: undo.input,
                    after: state_of(&EbsEncryptionDefault {
                        enabled: false,
                        ..was.clone()
                    }),
                    removes_created: false,
                })
            }
            "EnableEbsEncryptionByDefault" => Err("it was already on before the run".into()),
            "ModifyEbsDefaultKmsKeyId" => {
                let key = was.kms_key_id.clone().ok_or(
                    "the default key before the run could not be read, so it cannot be set back",
                )?;
                let summary = format!("make {key} the default EBS key again");
                let undo = api_call(
                    "ec2",
                    &EbsCall::ModifyEbsDefaultKmsKeyId(ModifyKeyInput { kms_key_id: key }),
                )?;
                Ok(Inverse::restoring(
                    before,
                    summary,
                    &undo.operation,
                    undo.input,
                ))
            }
            other => Err(format!("no inverse for {other}")),
        }
    }
}
