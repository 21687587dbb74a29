//! The registry: every resource kind and every action, each listed once. A kind is a
//! type implementing [`Kind`] in its concern's module; the list below derives
//! [`ResourceKind`] (the names runbooks use), [`Resource`] (the inventory's values) and
//! their dispatch from it, so adding a kind is one line here.

use std::collections::BTreeMap;
use std::fmt;

use super::{
    Action, cloudtrail, config, ebs, ebs_instances, ebs_volumes, events, flow_logs, iam, logs, s3,
    s3_account, security_group, sns, sqs,
};
use crate::aws::RegionClients;
use crate::error::Result;
use crate::event::KnownEvent;
use crate::inventory::{self, EXEMPT_TAG, Filters, Kind, Narrowing};

/// Lists the kinds: each `Variant(Type)`, in the order plans sort resources by.
macro_rules! kinds {
    ($( $(#[$doc:meta])* $variant:ident($ty:ty), )+) => {
        /// Kinds of resources runbooks can discover.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ResourceKind {
            $( $(#[$doc])* $variant, )+
        }

        /// A discovered resource.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Resource {
            $( $(#[$doc])* $variant($ty), )+
        }

        impl ResourceKind {
            /// Every kind, for `harden list` and validation messages.
            pub const ALL: &'static [ResourceKind] = &[$(ResourceKind::$variant),+];

            /// The name used in runbooks, e.g. `ec2:security-group`.
            pub fn name(self) -> &'static str {
                match self { $(ResourceKind::$variant => <$ty as Kind>::NAME,)+ }
            }

            /// Server-side filters the list call accepts for this kind.
            pub fn filters(self) -> &'static [&'static str] {
                match self { $(ResourceKind::$variant => <$ty as Kind>::FILTERS,)+ }
            }

            /// How an event naming one resource narrows a discovery of this kind.
            pub fn narrowing(self) -> Narrowing {
                match self { $(ResourceKind::$variant => <$ty as Kind>::NARROWING,)+ }
            }

            /// The CloudTrail events that can undo what harden holds this kind to.
            pub fn undone_by(self) -> &'static [KnownEvent] {
                match self { $(ResourceKind::$variant => <$ty as Kind>::UNDONE_BY,)+ }
            }

            /// A resource of this kind with every field set, as templates see it, so
            /// validation can render templates that use `item` in strict mode.
            pub fn sample(self) -> serde_json::Value {
                match self {
                    $(ResourceKind::$variant => {
                        Resource::$variant(<$ty as Kind>::sample()).to_template_value()
                    })+
                }
            }

            /// Reads the resources of this kind `filters` select in one region.
            pub async fn discover(
                self,
                clients: &RegionClients,
                filters: &Filters,
            ) -> Result<Vec<Resource>> {
                Ok(match self {
                    $(ResourceKind::$variant => <$ty as Kind>::discover(clients, filters)
                        .await?
                        .into_iter()
                        .map(Resource::$variant)
                        .collect(),)+
                })
            }
        }

        impl Resource {
            /// Its kind.
            pub fn kind(&self) -> ResourceKind {
                match self { $(Resource::$variant(_) => ResourceKind::$variant,)+ }
            }

            /// Its id.
            pub fn id(&self) -> &str {
                match self { $(Resource::$variant(r) => Kind::id(r),)+ }
            }

            /// Its tags (a region setting has none).
            pub fn tags(&self) -> Option<&BTreeMap<String, String>> {
                match self { $(Resource::$variant(r) => Kind::tags(r),)+ }
            }

            /// Its fields and derived facts as templates see them (`item`).
            fn template_fields(&self) -> (serde_json::Value, Vec<(&'static str, serde_json::Value)>) {
                match self {
                    $(Resource::$variant(r) => (
                        crate::actions::state_of(r),
                        Kind::template_facts(r),
                    ),)+
                }
            }
        }
    };
}

kinds! {
    /// An EC2 (VPC) security group.
    SecurityGroup(inventory::SecurityGroup),
    /// A region's EBS encryption-by-default setting (one per region; its id is the region).
    EbsEncryptionDefault(inventory::EbsEncryptionDefault),
    /// An S3 bucket named by the runbook (a log destination); it may not exist yet.
    Bucket(inventory::Bucket),
    /// A VPC with its flow logs.
    Vpc(inventory::Vpc),
    /// The CloudTrail trails a region sees (one per region; its id is the region).
    Trails(inventory::Trails),
    /// A region's AWS Config recorder and delivery channels (one per region; id = region).
    ConfigRecorder(inventory::ConfigSetup),
    /// An IAM role by name; it may not exist yet.
    Role(inventory::Role),
    /// The service-linked role of a service, found by its path (id = the service
    /// principal); it may not exist yet.
    ServiceLinkedRole(inventory::ServiceLinkedRole),
    /// An EBS volume, with what harden made to replace it (boxed: the largest kind).
    Volume(Box<inventory::Volume>),
    /// An EC2 instance with its EBS devices and what harden made to replace them.
    Instance(inventory::Instance),
    /// A CloudWatch Logs log group by name; it may not exist yet.
    LogGroup(inventory::LogGroup),
    /// An SQS queue by name; it may not exist yet.
    Queue(inventory::Queue),
    /// An EventBridge rule on the default bus, by name; it may not exist yet.
    EventRule(inventory::EventRule),
    /// An SNS topic by name; it may not exist yet.
    Topic(inventory::Topic),
    /// An account's S3 Block Public Access configuration (id = the account).
    AccountPublicAccessBlock(s3_account::AccountPublicAccessBlock),
}

impl ResourceKind {
    /// Parses a runbook's `resource:` value.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.name() == name)
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// Plans, journals and audit records name a kind by its runbook name.
impl serde::Serialize for ResourceKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for ResourceKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Self::from_name(&name).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
            serde::de::Error::custom(format!(
                "unknown resource kind `{name}`, expected one of {}",
                names.join(", ")
            ))
        })
    }
}

impl Resource {
    /// True when tagged `harden:exempt` = `true`.
    pub fn is_exempt(&self) -> bool {
        self.tags()
            .and_then(|tags| tags.get(EXEMPT_TAG))
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    /// The resource as templates see it (`item`): its fields, its derived facts and
    /// `exempt`.
    pub fn to_template_value(&self) -> serde_json::Value {
        let (mut value, facts) = self.template_fields();
        if let Some(map) = value.as_object_mut() {
            for (name, fact) in facts {
                map.insert(name.into(), fact);
            }
            map.insert("exempt".into(), self.is_exempt().into());
        }
        value
    }
}

/// Checks every change of a saved plan (`file`) before anything is contacted: its
/// action is one this harden has, and its call is one the action's concern makes, with
/// an input that holds up. Every change that does not is named.
pub fn check_calls(plan: &crate::plan::Plan, file: &std::path::Path) -> Result<()> {
    let mut problems = crate::error::Problems::default();
    let location = || {
        Some(crate::error::SourceLocation {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
        })
    };
    for change in &plan.changes {
        let checked = match find(&change.action) {
            None => Err(crate::Error::plan_input(
                &change.id,
                format!("action {} is not one this harden has", change.action),
            )),
            Some(action) => action.calls().check(change),
        };
        if let Err(error) = checked {
            problems.push(location(), error.to_string());
        }
    }
    problems.into_result()
}

/// Every registered action.
pub fn registry() -> &'static [&'static dyn Action] {
    &[
        &security_group::RestrictEgress,
        &security_group::CloseGroup,
        &ebs::EnableEncryptionByDefault,
        &ebs_volumes::EncryptVolume,
        &ebs_instances::EncryptInstanceVolumes,
        &s3::EnsureBucket,
        &flow_logs::EnableFlowLogs,
        &cloudtrail::EnsureTrail,
        &iam::EnsureServiceLinkedRole,
        &iam::EnsureRole,
        &logs::EnsureLogGroup,
        &config::EnsureRecorder,
        &sqs::queue::EnsureQueue,
        &events::rule::EnsureRule,
        &sns::topic::EnsureTopic,
        &s3_account::BlockAccountPublicAccess,
    ]
}

/// The action with this name.
pub fn find(name: &str) -> Option<&'static dyn Action> {
    registry().iter().copied().find(|a| a.info().name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::model::ParamType;

    fn arguments(action: &str) -> Vec<(String, ParamType, bool)> {
        find(action)
            .expect("registered")
            .arguments()
            .into_iter()
            .map(|a| (a.name, a.kind, a.required))
            .collect()
    }

    #[test]
    fn arguments_come_from_the_typed_arguments_with_types_and_required_ones() {
        assert_eq!(
            arguments("cloudtrail:ensure-trail"),
            [
                ("trail_name".to_string(), ParamType::String, true),
                ("bucket_name".to_string(), ParamType::String, true),
                ("kms_key_id".to_string(), ParamType::String, false),
            ]
        );
        assert_eq!(
            arguments("logs:ensure-log-group"),
            [
                ("retention_days".to_string(), ParamType::Int, true),
                ("kms_key_arn".to_string(), ParamType::String, false),
            ]
        );
        assert_eq!(
            arguments("ec2:restrict-egress"),
            [("allowed".to_string(), ParamType::List, true)]
        );
        assert_eq!(
            arguments("iam:ensure-role")[0],
            ("trust_policy".to_string(), ParamType::Map, true)
        );
        // Shared arguments are flattened into the action's own.
        let instance: Vec<String> = arguments("ec2:encrypt-instance-volumes")
            .into_iter()
            .map(|(name, _, _)| name)
            .collect();
        assert_eq!(
            instance,
            [
                "allow_stop",
                "kms_key_id",
                "keep_snapshots",
                "delete_originals",
                "retire_originals_after"
            ]
        );
        assert!(arguments("iam:ensure-service-linked-role").is_empty());
    }

    #[test]
    fn every_argument_says_what_it_means() {
        for action in registry() {
            for argument in action.arguments() {
                assert!(
                    !argument.description.is_empty(),
                    "{} {}: a doc comment on the field",
                    action.info().name,
                    argument.name
                );
            }
        }
    }
}
