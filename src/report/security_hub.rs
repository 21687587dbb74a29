//! Importing findings into Security Hub (`BatchImportFindings`, at most 100 a call).
//! Security Hub takes a finding under an account's default product only from that
//! account, so each account's findings are imported with its own session, region by
//! region.

use aws_sdk_securityhub::types::{
    AwsSecurityFinding, Compliance, ComplianceStatus, Note, Resource, Severity, SeverityLabel,
    Workflow, WorkflowStatus,
};

use super::findings::AsffFinding;
use crate::aws::{Answer, RegionClients};
use crate::error::Result;

/// BatchImportFindings' limit.
const BATCH: usize = 100;

/// What Security Hub answered for one account-region.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Imported {
    /// Findings it took.
    pub succeeded: usize,
    /// Findings it refused: id, code and message.
    pub failed: Vec<(String, String, String)>,
}

fn finding(f: &AsffFinding) -> AwsSecurityFinding {
    let mut builder = AwsSecurityFinding::builder()
        .schema_version(f.schema_version)
        .id(&f.id)
        .product_arn(&f.product_arn)
        .generator_id(&f.generator_id)
        .aws_account_id(&f.aws_account_id)
        .region(&f.region)
        .set_types(Some(f.types.clone()))
        .created_at(&f.created_at)
        .updated_at(&f.updated_at)
        .severity(
            Severity::builder()
                .label(SeverityLabel::from(f.severity_label))
                .build(),
        )
        .title(&f.title)
        .description(&f.description)
        .resources(
            Resource::builder()
                .r#type(&f.resource_type)
                .id(&f.resource_id)
                .region(&f.region)
                .build(),
        )
        .compliance(
            Compliance::builder()
                .status(ComplianceStatus::from(f.compliance_status))
                .set_related_requirements(Some(f.related_requirements.clone()))
                .build(),
        )
        .workflow(
            Workflow::builder()
                .status(WorkflowStatus::from(f.workflow_status))
                .build(),
        );
    if let Some(text) = &f.note {
        builder = builder.note(
            Note::builder()
                .text(text)
                .updated_by("harden")
                .updated_at(&f.updated_at)
                .build(),
        );
    }
    builder.build()
}

/// Imports `findings` (all of `clients`' account and region).
pub async fn import(clients: &RegionClients, findings: &[AsffFinding]) -> Result<Imported> {
    // Made when asked: only reports use it.
    let hub = clients.service_client(|config| crate::aws::client!(aws_sdk_securityhub, config));
    let mut imported = Imported::default();
    for batch in findings.chunks(BATCH) {
        let out = hub
            .batch_import_findings()
            .set_findings(Some(batch.iter().map(finding).collect()))
            .send()
            .await
            .or_failure("BatchImportFindings")?;
        imported.succeeded += usize::try_from(out.success_count().unwrap_or(0)).unwrap_or(0);
        imported
            .failed
            .extend(out.failed_findings().iter().map(|e| {
                (
                    e.id().unwrap_or_default().to_string(),
                    e.error_code().unwrap_or_default().to_string(),
                    e.error_message().unwrap_or_default().to_string(),
                )
            }));
    }
    Ok(imported)
}
