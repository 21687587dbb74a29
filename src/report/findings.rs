//! A report as security findings, one per resource that is or was non-compliant: OCSF
//! 1.3 Detection Findings (the format Prowler writes by default) and ASFF, the AWS
//! Security Finding Format that Security Hub imports ([`crate::report::findings`] is
//! what `harden report --format ocsf|asff` prints and `--security-hub` imports).
//!
//! A resource harden fixed and verified is a finding with a passed status, resolved,
//! with a note naming the run: importing it marks the earlier finding of the same
//! resource (same id) resolved. Compliant resources harden only counted have none.

use serde::Serialize;

use super::{Item, Report, RunbookReport};

/// The id a resource's finding keeps from run to run, so a later import updates it.
fn finding_id(account: &str, region: &str, runbook: &str, resource: &str) -> String {
    format!("harden/{account}/{region}/{runbook}/{resource}")
}

/// What a resource's finding says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Fixed,
    Drift,
    AwaitingApproval,
    Blocked,
    Failed,
}

impl State {
    fn passed(self) -> bool {
        self == State::Fixed
    }

    fn words(self) -> &'static str {
        match self {
            State::Fixed => "fixed and verified",
            State::Drift => "not compliant; left as it is",
            State::AwaitingApproval => "not compliant; the fix awaits approval",
            State::Blocked => "not compliant; harden may not change it",
            State::Failed => "not compliant; harden's change failed",
        }
    }
}

/// One resource's finding, before it is written in a format.
struct Finding<'a> {
    id: String,
    account: &'a str,
    account_name: Option<&'a str>,
    region: &'a str,
    runbook: &'a RunbookReport,
    item: &'a Item,
    state: State,
}

fn findings(report: &Report) -> Vec<Finding<'_>> {
    let mut out = Vec::new();
    for account in &report.accounts {
        for region in &account.regions {
            for runbook in &region.runbooks {
                let lists = [
                    (State::Fixed, &runbook.fixed),
                    (State::Drift, &runbook.drift),
                    (State::AwaitingApproval, &runbook.awaiting_approval),
                    (State::Blocked, &runbook.blocked),
                    (State::Failed, &runbook.failed),
                ];
                for (state, items) in lists {
                    for item in items {
                        out.push(Finding {
                            id: finding_id(
                                &account.id,
                                &region.region,
                                &runbook.runbook,
                                &item.resource.id,
                            ),
                            account: &account.id,
                            account_name: account.name.as_deref(),
                            region: &region.region,
                            runbook,
                            item,
                            state,
                        });
                    }
                }
            }
        }
    }
    out
}

fn description(finding: &Finding<'_>, run: Option<&str>) -> String {
    let mut text = format!(
        "{} {} in {}: {}.",
        finding.item.resource.kind,
        finding.item.resource.id,
        finding.region,
        finding.state.words()
    );
    if !finding.item.changes.is_empty() {
        text.push_str(&format!(" Changes: {}.", finding.item.changes.join("; ")));
    }
    if let Some(detail) = &finding.item.detail {
        text.push_str(&format!(" {detail}."));
    }
    if let Some(run) = run {
        text.push_str(&format!(" harden run {run}."));
    }
    text
}

fn requirements(runbook: &RunbookReport) -> Vec<String> {
    runbook
        .controls
        .iter()
        .map(|c| format!("{} {}", c.framework, c.id))
        .collect()
}

/// An OCSF 1.3 Detection Finding (class 2004), the fields harden fills.
#[derive(Debug, Serialize)]
pub struct OcsfFinding {
    metadata: OcsfMetadata,
    class_uid: u32,
    class_name: &'static str,
    category_uid: u32,
    category_name: &'static str,
    activity_id: u32,
    activity_name: &'static str,
    type_uid: u32,
    type_name: &'static str,
    severity_id: u32,
    severity: &'static str,
    status_id: u32,
    status: &'static str,
    status_code: &'static str,
    status_detail: String,
    time: i64,
    finding_info: OcsfFindingInfo,
    resources: Vec<OcsfResource>,
    cloud: OcsfCloud,
    compliance: OcsfCompliance,
}

#[derive(Debug, Serialize)]
struct OcsfMetadata {
    version: &'static str,
    product: OcsfProduct,
    event_code: String,
}

#[derive(Debug, Serialize)]
struct OcsfProduct {
    name: &'static str,
    vendor_name: &'static str,
    version: &'static str,
}

#[derive(Debug, Serialize)]
struct OcsfFindingInfo {
    uid: String,
    title: String,
    desc: String,
    types: Vec<String>,
}

#[derive(Debug, Serialize)]
struct OcsfResource {
    uid: String,
    #[serde(rename = "type")]
    kind: String,
    region: String,
}

#[derive(Debug, Serialize)]
struct OcsfCloud {
    provider: &'static str,
    region: String,
    account: OcsfAccount,
}

#[derive(Debug, Serialize)]
struct OcsfAccount {
    uid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(rename = "type")]
    kind: &'static str,
    type_id: u32,
}

#[derive(Debug, Serialize)]
struct OcsfCompliance {
    requirements: Vec<String>,
    status: &'static str,
    status_id: u32,
}

/// The report as OCSF Detection Findings.
pub fn ocsf(report: &Report) -> Vec<OcsfFinding> {
    let time = report.planned_at.as_millisecond();
    findings(report)
        .into_iter()
        .map(|f| {
            let passed = f.state.passed();
            OcsfFinding {
                metadata: OcsfMetadata {
                    version: "1.3.0",
                    product: OcsfProduct {
                        name: "harden",
                        vendor_name: "harden",
                        version: env!("CARGO_PKG_VERSION"),
                    },
                    event_code: f.runbook.runbook.clone(),
                },
                class_uid: 2004,
                class_name: "Detection Finding",
                category_uid: 2,
                category_name: "Findings",
                activity_id: if passed { 3 } else { 1 },
                activity_name: if passed { "Close" } else { "Create" },
                type_uid: if passed { 200_403 } else { 200_401 },
                type_name: if passed {
                    "Detection Finding: Close"
                } else {
                    "Detection Finding: Create"
                },
                severity_id: 3,
                severity: "Medium",
                status_id: if passed { 4 } else { 1 },
                status: if passed { "Resolved" } else { "New" },
                status_code: if passed { "PASS" } else { "FAIL" },
                status_detail: description(&f, report.run_id.as_deref()),
                time,
                finding_info: OcsfFindingInfo {
                    uid: f.id.clone(),
                    title: f.runbook.title.clone(),
                    desc: description(&f, None),
                    types: requirements(f.runbook),
                },
                resources: vec![OcsfResource {
                    uid: f.item.resource.id.clone(),
                    kind: f.item.resource.kind.to_string(),
                    region: f.region.to_string(),
                }],
                cloud: OcsfCloud {
                    provider: "AWS",
                    region: f.region.to_string(),
                    account: OcsfAccount {
                        uid: f.account.to_string(),
                        name: f.account_name.map(str::to_string),
                        kind: "AWS Account",
                        type_id: 10,
                    },
                },
                compliance: OcsfCompliance {
                    requirements: requirements(f.runbook),
                    status: if passed { "Pass" } else { "Fail" },
                    status_id: if passed { 1 } else { 3 },
                },
            }
        })
        .collect()
}

/// An ASFF finding: the fields of `BatchImportFindings` harden fills, with AWS's names.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffFinding {
    /// `2018-10-08`.
    pub schema_version: &'static str,
    /// Stable per resource: `harden/ACCOUNT/REGION/RUNBOOK/RESOURCE`.
    pub id: String,
    /// The account's default product for findings it imports itself.
    pub product_arn: String,
    /// `harden/RUNBOOK`.
    pub generator_id: String,
    /// The account the resource is in.
    pub aws_account_id: String,
    /// The region the resource is in.
    pub region: String,
    /// Finding types.
    pub types: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// `MEDIUM`.
    pub severity_label: &'static str,
    /// The runbook's title.
    pub title: String,
    /// What harden found and did.
    pub description: String,
    /// The resource's type and id.
    pub resource_type: String,
    /// The resource's id.
    pub resource_id: String,
    /// `PASSED` (fixed) or `FAILED`.
    pub compliance_status: &'static str,
    /// The controls.
    pub related_requirements: Vec<String>,
    /// `RESOLVED` (fixed) or `NEW`.
    pub workflow_status: &'static str,
    /// A note naming the run, for a finding harden resolved.
    pub note: Option<String>,
}

/// The report as ASFF findings. `partition` builds the product ARN.
pub fn asff(report: &Report, partition: &str) -> Vec<AsffFinding> {
    let at = report.planned_at.to_string();
    findings(report)
        .into_iter()
        .map(|f| {
            let passed = f.state.passed();
            AsffFinding {
                schema_version: "2018-10-08",
                id: f.id.clone(),
                product_arn: format!(
                    "arn:{partition}:securityhub:{}:{}:product/{}/default",
                    f.region, f.account, f.account
                ),
                generator_id: format!("harden/{}", f.runbook.runbook),
                aws_account_id: f.account.to_string(),
                region: f.region.to_string(),
                types: vec![
                    "Software and Configuration Checks/Industry and Regulatory Standards"
                        .to_string(),
                ],
                created_at: at.clone(),
                updated_at: at.clone(),
                severity_label: "MEDIUM",
                title: f.runbook.title.clone(),
                description: description(&f, None),
                resource_type: asff_type(&f.item.resource.kind.to_string()),
                resource_id: f.item.resource.id.clone(),
                compliance_status: if passed { "PASSED" } else { "FAILED" },
                related_requirements: requirements(f.runbook),
                workflow_status: if passed { "RESOLVED" } else { "NEW" },
                note: passed.then(|| {
                    format!(
                        "Fixed and verified by harden run {}.",
                        report.run_id.as_deref().unwrap_or("(no run)")
                    )
                }),
            }
        })
        .collect()
}

/// The ASFF resource type of a harden resource kind (`Other` where ASFF has none).
fn asff_type(kind: &str) -> String {
    match kind {
        "ec2:security-group" => "AwsEc2SecurityGroup",
        "ec2:vpc" => "AwsEc2Vpc",
        "ec2:volume" => "AwsEc2Volume",
        "ec2:instance" => "AwsEc2Instance",
        "s3:bucket" => "AwsS3Bucket",
        "iam:role" | "iam:service-linked-role" => "AwsIamRole",
        "cloudtrail:trails" => "AwsCloudTrailTrail",
        "logs:log-group" => "AwsLogsLogGroup",
        _ => "Other",
    }
    .to_string()
}
