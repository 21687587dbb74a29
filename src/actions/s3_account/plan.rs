//! The action holding the account's Block Public Access on, and its way back.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::calls::{DeleteInput, PutInput, S3ControlCall, S3ControlCalls};
use super::kind::AccountPublicAccessBlock;
use crate::actions::{
    Action, ActionInfo, ActionPlan, ArgSpec, Calls, DraftChain, Inverse, Resource, ResourceKind,
    api_call, arguments_of, recorded, state_of, typed_args,
};
use crate::inventory::PublicAccessBlock;
use crate::plan::{ApiCall, ChangeKind};

/// Turns on the account's Block Public Access switches the arguments ask for.
pub struct BlockAccountPublicAccess;

/// The arguments of `s3:block-account-public-access`: each switch to hold on (all four
/// by default, as FSBP S3.1 asks). A switch given `false` is left as it is: this action
/// never turns protection off.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockArgs {
    /// Refuse new public ACLs on buckets and objects.
    #[serde(default = "on")]
    pub block_public_acls: bool,
    /// Ignore every public ACL already there.
    #[serde(default = "on")]
    pub ignore_public_acls: bool,
    /// Refuse bucket policies that grant public access.
    #[serde(default = "on")]
    pub block_public_policy: bool,
    /// Restrict buckets with a public policy to AWS services and the account.
    #[serde(default = "on")]
    pub restrict_public_buckets: bool,
}

fn on() -> bool {
    true
}

static INFO: ActionInfo = ActionInfo {
    name: "s3:block-account-public-access",
    description: "turn on S3 Block Public Access for the whole account (PutPublicAccessBlock on S3 Control), every switch asked for, keeping any already on",
    resource_kind: ResourceKind::AccountPublicAccessBlock,
    outputs: &[],
    waits: false,
};

fn wanted(args: &BlockArgs, current: PublicAccessBlock) -> PublicAccessBlock {
    PublicAccessBlock {
        block_public_acls: current.block_public_acls || args.block_public_acls,
        ignore_public_acls: current.ignore_public_acls || args.ignore_public_acls,
        block_public_policy: current.block_public_policy || args.block_public_policy,
        restrict_public_buckets: current.restrict_public_buckets || args.restrict_public_buckets,
    }
}

fn put(account_id: &str, switches: PublicAccessBlock) -> S3ControlCall {
    S3ControlCall::PutPublicAccessBlock(PutInput {
        account_id: account_id.to_string(),
        public_access_block_configuration: switches.into(),
    })
}

fn off_names(switches: PublicAccessBlock) -> Vec<&'static str> {
    [
        ("BlockPublicAcls", switches.block_public_acls),
        ("IgnorePublicAcls", switches.ignore_public_acls),
        ("BlockPublicPolicy", switches.block_public_policy),
        ("RestrictPublicBuckets", switches.restrict_public_buckets),
    ]
    .into_iter()
    .filter(|(_, on)| !on)
    .map(|(name, _)| name)
    .collect()
}

impl Action for BlockAccountPublicAccess {
    fn arguments(&self) -> Vec<ArgSpec> {
        arguments_of::<BlockArgs>()
    }

    fn info(&self) -> &'static ActionInfo {
        &INFO
    }

    fn plan(&self, target: &Resource, args: &Value) -> Result<ActionPlan, String> {
        let Resource::AccountPublicAccessBlock(block) = target else {
            return Err(format!(
                "expected the account's public access block, given {}",
                target.kind()
            ));
        };
        let args: BlockArgs = typed_args(args)?;
        let current = block.in_force();
        let target_switches = wanted(&args, current);
        if block.settings == Some(target_switches) {
            return Ok(ActionPlan::default());
        }
        let turned_on: Vec<&str> = off_names(current)
            .into_iter()
            .filter(|name| !off_names(target_switches).contains(name))
            .collect();
        let after = AccountPublicAccessBlock {
            settings: Some(target_switches),
            ..block.clone()
        };
        let mut chain = DraftChain::new("s3control", state_of(block));
        chain.push_call(
            ChangeKind::Update,
            format!(
                "block public access for account {}: turn on {}",
                block.account_id,
                turned_on.join(", ")
            ),
            state_of(&after),
            &put(&block.account_id, target_switches),
        )?;
        Ok(chain.into_plan(Resource::AccountPublicAccessBlock(after)))
    }

    fn calls(&self) -> &'static dyn Calls {
        &S3ControlCalls
    }

    /// The configuration read before the run is put back: its switches, or none at all
    /// (deleted) where the account had none.
    fn inverse(&self, call: &ApiCall, before: &Value, _after: &Value) -> Result<Inverse, String> {
        if call.operation != "PutPublicAccessBlock" {
            return Err(format!("no inverse for {}", call.operation));
        }
        let was: AccountPublicAccessBlock = recorded(before, "account's public access block")?;
        let (summary, call) = match was.settings {
            Some(switches) => (
                format!(
                    "put account {}'s public access block back as it was",
                    was.account_id
                ),
                put(&was.account_id, switches),
            ),
            None => (
                format!(
                    "remove account {}'s public access block, which it did not have",
                    was.account_id
                ),
                S3ControlCall::DeletePublicAccessBlock(DeleteInput {
                    account_id: was.account_id.clone(),
                }),
            ),
        };
        let call = api_call("s3control", &call)?;
        Ok(Inverse::restoring(
            before,
            summary,
            &call.operation,
            call.input,
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn account(settings: Option<PublicAccessBlock>) -> Resource {
        Resource::AccountPublicAccessBlock(AccountPublicAccessBlock {
            account_id: "111122223333".into(),
            settings,
        })
    }

    const ALL_OFF: PublicAccessBlock = PublicAccessBlock {
        block_public_acls: false,
        ignore_public_acls: false,
        block_public_policy: false,
        restrict_public_buckets: false,
    };

    #[test]
    fn an_account_without_a_configuration_gets_all_four_switches_in_one_put() {
        let plan = BlockAccountPublicAccess
            .plan(&account(None), &json!({}))
            .expect("plans");
        assert_eq!(plan.changes.len(), 1);
        let change = &plan.changes[0];
        assert_eq!(change.call.service, "s3control");
        assert_eq!(change.call.operation, "PutPublicAccessBlock");
        assert_eq!(
            change.call.input,
            json!({
                "AccountId": "111122223333",
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": true,
                    "IgnorePublicAcls": true,
                    "BlockPublicPolicy": true,
                    "RestrictPublicBuckets": true
                }
            })
        );
        assert_eq!(
            change.before,
            json!({"account_id": "111122223333", "settings": null})
        );
        assert_eq!(change.after["settings"]["restrict_public_buckets"], true);
        assert_eq!(
            change.summary,
            "block public access for account 111122223333: turn on BlockPublicAcls, IgnorePublicAcls, BlockPublicPolicy, RestrictPublicBuckets"
        );
        assert_eq!(
            plan.projected,
            Some(account(Some(PublicAccessBlock::ALL_ON)))
        );
    }

    #[test]
    fn a_compliant_account_plans_nothing_and_a_switch_on_is_never_turned_off() {
        let plan = BlockAccountPublicAccess
            .plan(&account(Some(PublicAccessBlock::ALL_ON)), &json!({}))
            .expect("plans");
        assert!(plan.changes.is_empty());
        // Asking for less than is on changes nothing either.
        let plan = BlockAccountPublicAccess
            .plan(
                &account(Some(PublicAccessBlock::ALL_ON)),
                &json!({"block_public_acls": false, "ignore_public_acls": false}),
            )
            .expect("plans");
        assert!(plan.changes.is_empty());
        // One switch asked for is added to those already on.
        let some = PublicAccessBlock {
            block_public_policy: true,
            ..ALL_OFF
        };
        let plan = BlockAccountPublicAccess
            .plan(
                &account(Some(some)),
                &json!({"block_public_acls": false, "ignore_public_acls": false, "restrict_public_buckets": false}),
            )
            .expect("plans");
        assert!(plan.changes.is_empty(), "{plan:?}");
        let plan = BlockAccountPublicAccess
            .plan(
                &account(Some(some)),
                &json!({"block_public_acls": false, "ignore_public_acls": false}),
            )
            .expect("plans");
        assert_eq!(
            plan.changes[0].call.input["PublicAccessBlockConfiguration"],
            json!({"BlockPublicAcls": false, "IgnorePublicAcls": false, "BlockPublicPolicy": true, "RestrictPublicBuckets": true})
        );
        assert_eq!(
            plan.changes[0].summary,
            "block public access for account 111122223333: turn on RestrictPublicBuckets"
        );
    }

    #[test]
    fn a_configuration_with_every_switch_off_is_still_corrected() {
        let plan = BlockAccountPublicAccess
            .plan(&account(Some(ALL_OFF)), &json!({}))
            .expect("plans");
        assert_eq!(plan.changes.len(), 1);
    }

    #[test]
    fn bad_arguments_are_refused_naming_the_argument() {
        let err = BlockAccountPublicAccess
            .plan(&account(None), &json!({"block_public_acls": "yes"}))
            .expect_err("refused");
        assert!(err.contains("block_public_acls"), "{err}");
        let err = BlockAccountPublicAccess
            .plan(&account(None), &json!({"block_everything": true}))
            .expect_err("refused");
        assert!(err.contains("block_everything"), "{err}");
    }

    #[test]
    fn the_inverse_puts_the_switches_back_or_removes_a_configuration_that_was_not_there() {
        let plan = BlockAccountPublicAccess
            .plan(&account(None), &json!({}))
            .expect("plans");
        let change = &plan.changes[0];
        let inverse = BlockAccountPublicAccess
            .inverse(&change.call, &change.before, &change.after)
            .expect("a way back");
        assert_eq!(inverse.operation, "DeletePublicAccessBlock");
        assert_eq!(inverse.input, json!({"AccountId": "111122223333"}));
        assert_eq!(inverse.after, change.before);

        let some = PublicAccessBlock {
            block_public_policy: true,
            ..ALL_OFF
        };
        let plan = BlockAccountPublicAccess
            .plan(&account(Some(some)), &json!({}))
            .expect("plans");
        let change = &plan.changes[0];
        let inverse = BlockAccountPublicAccess
            .inverse(&change.call, &change.before, &change.after)
            .expect("a way back");
        assert_eq!(inverse.operation, "PutPublicAccessBlock");
        assert_eq!(
            inverse.input["PublicAccessBlockConfiguration"],
            json!({"BlockPublicAcls": false, "IgnorePublicAcls": false, "BlockPublicPolicy": true, "RestrictPublicBuckets": false})
        );
    }

    #[test]
    fn a_saved_call_that_does_not_hold_up_is_refused_naming_the_change() {
        let plan = BlockAccountPublicAccess
            .plan(&account(None), &json!({}))
            .expect("plans");
        let draft = &plan.changes[0];
        let mut call = draft.call.clone();
        call.input["PublicAccessBlockConfiguration"]["BlockPublicAcls"] = json!("yes");
        let change = crate::plan::Change {
            id: "c1".into(),
            runbook: "block-s3-public-access".into(),
            account_id: "111122223333".into(),
            region: "us-east-1".into(),
            step: "block".into(),
            action: INFO.name.into(),
            resource: crate::plan::ResourceRef {
                kind: ResourceKind::AccountPublicAccessBlock,
                id: "111122223333".into(),
                tags: Default::default(),
            },
            kind: ChangeKind::Update,
            summary: draft.summary.clone(),
            before: draft.before.clone(),
            after: draft.after.clone(),
            call,
            on_failure: Default::default(),
            wait_timeout_seconds: None,
            probe: None,
        };
        let err = crate::actions::typed_call::<S3ControlCall>(&change).expect_err("refused");
        let text = err.to_string();
        assert!(
            text.contains("c1") && text.contains("PublicAccessBlockConfiguration.BlockPublicAcls"),
            "{text}"
        );
        let mut other = change.clone();
        other.call.operation = "DeleteBucket".into();
        let text = crate::actions::typed_call::<S3ControlCall>(&other)
            .expect_err("refused")
            .to_string();
        assert!(text.contains("DeleteBucket"), "{text}");
    }
}
