//! Apply paths the emulators cannot show, with mocked EC2 responses: a call that
//! answers success but changes nothing, throttling, a refused call, a stale plan.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::operation::describe_security_group_rules::DescribeSecurityGroupRulesOutput;
use aws_sdk_ec2::operation::revoke_security_group_egress::RevokeSecurityGroupEgressOutput;
use aws_sdk_ec2::types::SecurityGroupRule;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use serde_json::json;

use super::*;
use crate::actions::ResourceKind;
use crate::audit::{ChangeRecord, Entry};
use crate::plan::{ApiCall, ChangeKind, PlannedRunbook, ResourceRef};
use crate::runbook::model::OnFailure;

fn open_rule(group: &str, id: &str) -> SecurityGroupRule {
    SecurityGroupRule::builder()
        .security_group_rule_id(id)
        .group_id(group)
        .is_egress(true)
        .ip_protocol("-1")
        .from_port(-1)
        .to_port(-1)
        .cidr_ipv4("0.0.0.0/0")
        .build()
}

fn rule_state(id: Option<&str>) -> Value {
    match id {
        Some(id) => json!({"ingress": [], "egress": [{
            "rule_id": id, "protocol": "-1", "from_port": null, "to_port": null,
            "peer": {"cidr": "0.0.0.0/0"}, "description": null}]}),
        None => json!({"ingress": [], "egress": []}),
    }
}

fn revoke(group: &str, rule: &str) -> Change {
    Change {
        id: format!("t/us-east-1/close/{group}#1"),
        runbook: "t".into(),
        account_id: "123456789012".into(),
        region: "us-east-1".into(),
        step: "close".into(),
        action: "ec2:close-security-group".into(),
        resource: ResourceRef {
            kind: ResourceKind::SecurityGroup,
            id: group.into(),
            tags: Default::default(),
        },
        kind: ChangeKind::Delete,
        summary: "revoke".into(),
        before: rule_state(Some(rule)),
        after: rule_state(None),
        call: ApiCall {
            service: "ec2".into(),
            operation: "RevokeSecurityGroupEgress".into(),
            input: json!({"GroupId": group, "SecurityGroupRuleIds": [rule]}),
        },
        on_failure: OnFailure::Stop,
        wait_timeout_seconds: None,
        probe: None,
    }
}

fn plan_of(changes: Vec<Change>) -> Plan {
    Plan {
        format_version: crate::plan::PLAN_FORMAT_VERSION,
        harden_version: "test".into(),
        created_at: jiff::Timestamp::UNIX_EPOCH,
        principal: "arn:aws:iam::123456789012:user/t".into(),
        accounts: vec![crate::plan::PlannedAccount {
            target: crate::accounts::Target {
                id: "123456789012".into(),
                name: None,
                regions: vec!["us-east-1".into()],
                role: None,
                external_id: None,
                tags: Default::default(),
            },
            principal: "arn:aws:iam::123456789012:user/t".into(),
        }],
        unreachable: Vec::new(),
        runbooks: vec![PlannedRunbook {
            id: "t".into(),
            title: "t".into(),
            path: "t.yaml".into(),
            digest: "d".into(),
            controls: Vec::new(),
            steps: vec!["close".into()],
            requires: Vec::new(),
            parameters: Default::default(),
            given_parameters: Vec::new(),
            compliant: Default::default(),
        }],
        changes,
        blocked: Vec::new(),
        not_planned: Vec::new(),
        unprobed_services: Vec::new(),
    }
}

/// A revoke the service answers with success (whatever it then did).
fn revoke_succeeds() -> aws_smithy_mocks::Rule {
    mock!(Client::revoke_security_group_egress).then_output(|| {
        RevokeSecurityGroupEgressOutput::builder()
            .r#return(true)
            .build()
    })
}

fn rules_output(rules: Vec<SecurityGroupRule>) -> DescribeSecurityGroupRulesOutput {
    DescribeSecurityGroupRulesOutput::builder()
        .set_security_group_rules(Some(rules))
        .build()
}

struct Outcomes {
    report: ApplyReport,
    records: Vec<crate::audit::Record>,
    /// The state directory, kept for what a test reads of it.
    dir: tempfile::TempDir,
}

impl Outcomes {
    fn journal(&self) -> Vec<journal::JournalEntry> {
        Journal::read(self.dir.path(), "run-1").expect("journal")
    }
}

async fn run(client: Client, plan: &Plan) -> Outcomes {
    run_with(client, plan, false, false).await
}

async fn run_with(client: Client, plan: &Plan, interrupted: bool, fail_fast: bool) -> Outcomes {
    let aws = crate::aws::Aws::with_ec2_client(client);
    run_prepared(aws, plan, interrupted, fail_fast, |_| {}).await
}

/// As [`run_with`], with `prepare` given the state directory before the run's
/// journal is created.
async fn run_prepared(
    aws: crate::aws::Aws,
    plan: &Plan,
    interrupted: bool,
    fail_fast: bool,
    prepare: impl FnOnce(&std::path::Path),
) -> Outcomes {
    let dir = tempfile::tempdir().expect("tempdir");
    prepare(dir.path());
    let session = Session {
        scope: crate::accounts::Scope::own(
            crate::aws::CallerIdentity {
                account_id: "123456789012".into(),
                arn: "arn:aws:iam::123456789012:user/t".into(),
                partition: "aws".into(),
            },
            plan.regions(),
        ),
        aws,
    };
    let audit = Mutex::new(AuditLog::open(dir.path()).expect("audit"));
    let journal = Journal::create(dir.path(), "run-1", plan).expect("journal");
    let report = apply(
        &[session],
        plan,
        &audit,
        &journal,
        &ApplyOptions {
            concurrency: 1,
            run_id: "run-1".into(),
            interrupted: Arc::new(AtomicBool::new(interrupted)),
            fail_fast,
            unreachable: BTreeMap::new(),
            progress: Arc::new(crate::progress::Silent),
            cause: None,
            deadline: Instant::now() + std::time::Duration::from_secs(60),
        },
    )
    .await
    .expect("apply runs");
    crate::audit::verify(dir.path()).expect("the audit chain verifies");
    Outcomes {
        report,
        records: crate::audit::read(dir.path()).expect("records"),
        dir,
    }
}

fn change_records(records: &[crate::audit::Record]) -> Vec<&ChangeRecord> {
    records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::Change(c) => Some(c.as_ref()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_call_that_answers_success_but_changes_nothing_is_a_failure() {
    // Reads before and after both show the rule: the revoke "succeeded" in name only.
    let describe = mock!(Client::describe_security_group_rules)
        .then_output(|| rules_output(vec![open_rule("sg-1", "sgr-1")]));
    let revoke_call = revoke_succeeds();
    let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&describe, &revoke_call]);
    let plan = plan_of(vec![revoke("sg-1", "sgr-1"), revoke("sg-2", "sgr-2")]);
    let out = run_with(client, &plan, false, true).await;

    assert!(
        matches!(&out.report.outcomes[0].1, Outcome::Failed { code, .. } if code == "VerificationFailed")
    );
    assert!(
        matches!(&out.report.outcomes[1].1, Outcome::Skipped { reason } if reason.contains("--fail-fast")),
        "with --fail-fast, apply stops at the first failure"
    );
    let records = change_records(&out.records);
    assert_eq!(records.len(), 2);
    assert!(
        matches!(&records[0].outcome, Outcome::Failed { code, .. } if code == "VerificationFailed")
    );
    assert!(
        records[0].after.to_string().contains("sgr-1"),
        "the record shows what was read back"
    );
    assert_eq!(revoke_call.num_calls(), 1);
}

#[tokio::test]
async fn a_refused_repeat_of_a_change_already_made_is_a_success_saying_so() {
    // The revoke's first answer was lost and the SDK's repeat is refused: the rule
    // is already gone. The read-back, not the answer, decides.
    let before = mock!(Client::describe_security_group_rules)
        .then_output(|| rules_output(vec![open_rule("sg-1", "sgr-1")]));
    let gone = mock!(Client::revoke_security_group_egress).then_http_response(|| {
        let mut response = HttpResponse::new(
            StatusCode::try_from(400).expect("status"),
            SdkBody::from(
                "<Response><Errors><Error><Code>InvalidPermission.NotFound</Code><Message>The specified rule does not exist in this security group.</Message></Error></Errors><RequestID>req-9</RequestID></Response>",
            ),
        );
        response.headers_mut().insert("x-amzn-requestid", "req-9");
        response
    });
    let after =
        mock!(Client::describe_security_group_rules).then_output(|| rules_output(Vec::new()));
    let client = mock_client!(aws_sdk_ec2, RuleMode::Sequential, [&before, &gone, &after]);
    let out = run(client, &plan_of(vec![revoke("sg-1", "sgr-1")])).await;
    assert_eq!(out.report.outcomes[0].1, Outcome::Succeeded);
    let records = change_records(&out.records);
    assert_eq!(records[0].outcome, Outcome::Succeeded);
    assert_eq!(records[0].request_ids, ["req-9"]);
    assert!(
        records[0]
            .recovered
            .as_deref()
            .is_some_and(|r| r.contains("InvalidPermission.NotFound")),
        "{:?}",
        records[0].recovered
    );
}

#[tokio::test]
async fn a_refused_call_that_leaves_the_state_as_before_is_a_failure() {
    let describe = mock!(Client::describe_security_group_rules)
        .then_output(|| rules_output(vec![open_rule("sg-1", "sgr-1")]));
    let refused = mock!(Client::revoke_security_group_egress).then_http_response(|| {
        HttpResponse::new(
            StatusCode::try_from(500).expect("status"),
            SdkBody::from(
                "<Response><Errors><Error><Code>InternalError</Code><Message>An internal error has occurred.</Message></Error></Errors><RequestID>req-5</RequestID></Response>",
            ),
        )
    });
    let client = mock_client!(
        aws_sdk_ec2,
        RuleMode::MatchAny,
        [&describe, &refused],
        |conf| conf.retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled())
    );
    let out = run(client, &plan_of(vec![revoke("sg-1", "sgr-1")])).await;
    assert!(
        matches!(&out.report.outcomes[0].1, Outcome::Failed { code, .. } if code == "InternalError"),
        "{:?}",
        out.report.outcomes[0].1
    );
    assert_eq!(change_records(&out.records)[0].recovered, None);
}

#[tokio::test]
async fn throttling_is_absorbed_by_retries() {
    let throttled = || {
        HttpResponse::new(
            StatusCode::try_from(503).expect("status"),
            SdkBody::from(
                "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>r-1</RequestID></Response>",
            ),
        )
    };
    let before = mock!(Client::describe_security_group_rules)
        .sequence()
        .http_response(throttled)
        .times(2)
        .output(|| rules_output(vec![open_rule("sg-1", "sgr-1")]))
        .build();
    let revoke_call = revoke_succeeds();
    let after =
        mock!(Client::describe_security_group_rules).then_output(|| rules_output(Vec::new()));
    let client = mock_client!(
        aws_sdk_ec2,
        RuleMode::Sequential,
        [&before, &revoke_call, &after],
        |conf| conf
            .retry_config(aws_sdk_ec2::config::retry::RetryConfig::standard().with_max_attempts(4))
    );
    let out = run(client, &plan_of(vec![revoke("sg-1", "sgr-1")])).await;
    assert_eq!(out.report.outcomes[0].1, Outcome::Succeeded);
    assert_eq!(
        before.num_calls(),
        3,
        "two throttled attempts, then the answer"
    );
}

#[tokio::test]
async fn a_refused_call_fails_with_the_service_code_and_request_id() {
    let describe = mock!(Client::describe_security_group_rules)
        .then_output(|| rules_output(vec![open_rule("sg-1", "sgr-1")]));
    let refused = mock!(Client::revoke_security_group_egress).then_http_response(|| {
        // EC2 names the request in the x-amzn-requestid header as well as the body.
        let mut response = HttpResponse::new(
            StatusCode::try_from(403).expect("status"),
            SdkBody::from(
                "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>req-42</RequestID></Response>",
            ),
        );
        response.headers_mut().insert("x-amzn-requestid", "req-42");
        response
    });
    let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&describe, &refused]);
    let out = run(client, &plan_of(vec![revoke("sg-1", "sgr-1")])).await;
    let records = change_records(&out.records);
    assert!(
        matches!(&records[0].outcome, Outcome::Failed { code, message } if code == "UnauthorizedOperation" && message.contains("not authorized"))
    );
    assert_eq!(records[0].request_ids, vec!["req-42".to_string()]);
}

#[tokio::test]
async fn a_stale_change_is_refused_without_calling() {
    // Since the plan, someone replaced the rule: its id differs.
    let describe = mock!(Client::describe_security_group_rules)
        .then_output(|| rules_output(vec![open_rule("sg-1", "sgr-9")]));
    let revoke_call = revoke_succeeds();
    let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&describe, &revoke_call]);
    let out = run(client, &plan_of(vec![revoke("sg-1", "sgr-1")])).await;
    assert!(
        matches!(&out.report.outcomes[0].1, Outcome::Failed { code, message } if code == "StalePlan" && message.contains("sg-1"))
    );
    assert_eq!(
        revoke_call.num_calls(),
        0,
        "nothing is called on a stale change"
    );
}

#[tokio::test]
async fn an_interrupted_apply_starts_nothing_and_records_why() {
    let describe = mock!(Client::describe_security_group_rules)
        .then_output(|| rules_output(vec![open_rule("sg-1", "sgr-1")]));
    let revoke_call = revoke_succeeds();
    let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&describe, &revoke_call]);
    let out = run_with(client, &plan_of(vec![revoke("sg-1", "sgr-1")]), true, false).await;
    assert_eq!(
        out.report.outcomes[0].1,
        Outcome::Skipped {
            reason: "not attempted: apply was interrupted".into()
        }
    );
    assert_eq!(revoke_call.num_calls(), 0);
    assert_eq!(change_records(&out.records).len(), 1, "the skip is audited");
}

/// A run whose journal cannot be written (here: a full device) stops starting
/// changes and says what it could not record; the CLI turns that into an error
/// (`Error::NotRecorded`) instead of reporting a finished run.
#[tokio::test]
async fn a_run_that_cannot_record_stops_and_says_what_went_unrecorded() {
    let (client, _, revoke) = revoking_ec2("none");
    let aws = crate::aws::Aws::with_ec2_client(client);
    let out = run_prepared(aws, &revokes(&["sg-1", "sg-2"]), false, false, |dir| {
        let run = dir.join("runs").join("run-1");
        std::fs::create_dir_all(&run).expect("run folder");
        std::os::unix::fs::symlink("/dev/full", run.join("journal.jsonl"))
            .expect("journal on a full device");
    })
    .await;
    assert_eq!(revoke.num_calls(), 0, "nothing is changed unrecorded");
    let [first, second] = out.report.unrecorded.as_slice() else {
        panic!("two records lost: {:?}", out.report.unrecorded)
    };
    assert!(
        first.starts_with("change ") && first.contains("sg-1"),
        "{first}"
    );
    assert!(second.contains("sg-2"), "{second}");
    assert!(
        first.contains("No space left on device"),
        "the reason is kept: {first}"
    );
    assert!(
        matches!(&out.report.outcomes[0].1, Outcome::Failed { code, .. } if code == "JournalError"),
        "{:?}",
        out.report.outcomes
    );
}

/// EC2 with `groups` open groups whose revokes take effect; `lagging` shows its
/// revoke only from the second read after it (a read that came too soon).
fn revoking_ec2(lagging: &'static str) -> (Client, aws_smithy_mocks::Rule, aws_smithy_mocks::Rule) {
    revoking_ec2_in(lagging, Vec::new())
}

/// As [`revoking_ec2`], in a region holding `region` (each with its open rule until
/// revoked): a read without a filter lists them, 1000 rules a page. With none, the
/// region is one larger than any stage here: a read without a filter answers a page
/// and a token for more.
fn revoking_ec2_in(
    lagging: &'static str,
    region: Vec<String>,
) -> (Client, aws_smithy_mocks::Rule, aws_smithy_mocks::Rule) {
    growing_region(lagging, region, Vec::new())
}

/// As [`revoking_ec2_in`], and once the region has been listed to its end, `grown`
/// groups (each with an open rule) are in it too: what another tool made meanwhile.
fn growing_region(
    lagging: &'static str,
    region: Vec<String>,
    grown: Vec<String>,
) -> (Client, aws_smithy_mocks::Rule, aws_smithy_mocks::Rule) {
    let revoked: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let seen = revoked.clone();
    let listed = Mutex::new((region, Some(grown)));
    let describe = mock!(Client::describe_security_group_rules).then_compute_output(move |r| {
        let mut seen = seen.lock().expect("lock");
        // Whether a read shows `group`'s open rule: until it is revoked, and the
        // lagging group's once more, by whichever read comes first after.
        let mut shown = |group: &str| match seen.get_mut(group) {
            None => true,
            Some(reads) => {
                *reads += 1;
                group == lagging && *reads == 1
            }
        };
        if r.filters().is_empty() {
            let mut listed = listed.lock().expect("lock");
            let (region, grown) = &mut *listed;
            if region.is_empty() {
                return DescribeSecurityGroupRulesOutput::builder()
                    .next_token("more")
                    .build();
            }
            let from: usize = r.next_token().map_or(0, |t| t.parse().expect("token"));
            let to = (from + 1000).min(region.len());
            let rules = region[from..to]
                .iter()
                .filter(|group| shown(group))
                .map(|group| open_rule(group, &format!("sgr-{group}")))
                .collect();
            let next_token = (to < region.len()).then(|| to.to_string());
            if next_token.is_none()
                && let Some(grown) = grown.take()
            {
                region.extend(grown);
            }
            return DescribeSecurityGroupRulesOutput::builder()
                .set_security_group_rules(Some(rules))
                .set_next_token(next_token)
                .build();
        }
        let rules = r
            .filters()
            .iter()
            .flat_map(|f| f.values())
            .filter(|group| shown(group))
            .map(|group| open_rule(group, &format!("sgr-{group}")))
            .collect();
        rules_output(rules)
    });
    let revoke = mock!(Client::revoke_security_group_egress).then_compute_output(move |r| {
        if let Some(group) = r.group_id() {
            revoked.lock().expect("lock").insert(group.to_string(), 0);
        }
        RevokeSecurityGroupEgressOutput::builder()
            .r#return(true)
            .build()
    });
    let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&describe, &revoke]);
    (client, describe, revoke)
}

/// One revoke of each group's open rule, all in one stage.
fn revokes<G: AsRef<str>>(groups: &[G]) -> Plan {
    plan_of(
        groups
            .iter()
            .map(|g| revoke(g.as_ref(), &format!("sgr-{}", g.as_ref())))
            .collect(),
    )
}

fn assert_all_succeeded(report: &ApplyReport) {
    assert!(
        report
            .outcomes
            .iter()
            .all(|(_, o)| *o == Outcome::Succeeded),
        "{:?}",
        report.outcomes
    );
}

#[tokio::test]
async fn a_stage_reads_its_groups_in_pages_of_200_before_and_after_their_calls() {
    let (client, describe, revoke_call) = revoking_ec2("sg-none");
    let groups: Vec<String> = (0..250).map(|i| format!("sg-{i:03}")).collect();
    let out = run(client, &revokes(&groups)).await;
    assert_all_succeeded(&out.report);
    assert_eq!(revoke_call.num_calls(), 250);
    assert_eq!(
        describe.num_calls(),
        6,
        "the region's first two pages (more than the two pages of groups would take, so \
         left), then one read before and one after each page (200 and 50 groups)"
    );
    let records = change_records(&out.records);
    assert_eq!(records.len(), 250, "each change keeps its own record");
    for record in records {
        let group = &record.resource.id;
        assert_eq!(record.before, rule_state(Some(&format!("sgr-{group}"))));
        assert_eq!(record.after, rule_state(None), "{group} read back");
    }
    // Each change keeps its two journal lines; a page's started lines all come
    // before its calls, its ends once it is concluded.
    let journal = out.journal();
    let phases: Vec<(journal::Phase, &str)> = journal
        .iter()
        .map(|e| (e.phase, e.change_id.as_str()))
        .collect();
    let ids: Vec<String> = groups
        .iter()
        .map(|g| format!("t/us-east-1/close/{g}#1"))
        .collect();
    let expected: Vec<(journal::Phase, &str)> = [(0, 200), (200, 250)]
        .into_iter()
        .flat_map(|(from, to)| {
            let page = &ids[from..to];
            let started = page.iter().map(|id| (journal::Phase::Started, id.as_str()));
            let ended = page
                .iter()
                .map(|id| (journal::Phase::Succeeded, id.as_str()));
            started.chain(ended).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(phases, expected);
}

/// A stage over a region small enough to list in fewer calls than its pages of
/// groups take: the region is listed once before the stage, and each page is read
/// back by filter.
#[tokio::test]
async fn a_stage_over_most_of_a_region_lists_the_region_once_before_its_calls() {
    let groups: Vec<String> = (0..250).map(|i| format!("sg-{i:03}")).collect();
    let mut region = groups.clone();
    region.extend((0..900).map(|i| format!("sg-other-{i:03}")));
    let (client, describe, revoke_call) = revoking_ec2_in("sg-none", region);
    let out = run(client, &revokes(&groups)).await;
    assert_all_succeeded(&out.report);
    assert_eq!(revoke_call.num_calls(), 250);
    assert_eq!(
        describe.num_calls(),
        4,
        "the region's two pages of 1000 rules (1150 groups), then one read back a page"
    );
    let records = change_records(&out.records);
    assert_eq!(records.len(), 250, "each change keeps its own record");
    for record in records {
        let group = &record.resource.id;
        assert_eq!(record.before, rule_state(Some(&format!("sgr-{group}"))));
        assert_eq!(record.after, rule_state(None), "{group} read back");
    }
}

/// A stage over a whole region of 3500 groups, its calls not paced: listing it (four
/// calls of 1000 rules) once a page of 3000 takes fewer calls than reading back 18
/// pages of 200 by filter, so each page of up to 3000 is read back by listing the
/// region; each change still keeps its own record, and the lagging group is read
/// again alone.
#[tokio::test]
async fn a_stage_over_a_whole_region_reads_it_back_by_listing_it_once_a_page_of_3000() {
    let groups: Vec<String> = (0..3500).map(|i| format!("sg-{i:04}")).collect();
    let (client, describe, revoke_call) = revoking_ec2_in("sg-1500", groups.clone());
    let out = run(client, &revokes(&groups)).await;
    assert_all_succeeded(&out.report);
    assert_eq!(revoke_call.num_calls(), 3500);
    assert_eq!(
        describe.num_calls(),
        4 + 4 * 2 + 1,
        "the region's four pages before the stage, its four pages after each of the \
         two pages of groups (3000, 500), and sg-1500's own read"
    );
    let records = change_records(&out.records);
    assert_eq!(records.len(), 3500, "each change keeps its own record");
    for record in records {
        let group = &record.resource.id;
        assert_eq!(record.before, rule_state(Some(&format!("sgr-{group}"))));
        assert_eq!(record.after, rule_state(None), "{group} read back");
    }
    let journal = out.journal();
    let first_ended = journal
        .iter()
        .position(|e| e.phase == journal::Phase::Succeeded)
        .expect("ends");
    assert_eq!(
        first_ended, 3000,
        "a page of 3000 is concluded, and its ends written, once it is read back"
    );
}

/// A region that grew during the stage (2000 more groups, another tool's) would take
/// four listing calls to read back where the stage's took two: the listing stops at
/// three, one more than the stage's, and the page is read back by filter instead.
#[tokio::test]
async fn a_region_grown_past_one_more_listing_call_is_read_back_by_filter() {
    let groups: Vec<String> = (0..2000).map(|i| format!("sg-{i:04}")).collect();
    let grown = (0..2000).map(|i| format!("sg-new-{i:04}")).collect();
    let (client, describe, revoke_call) = growing_region("sg-none", groups.clone(), grown);
    let out = run(client, &revokes(&groups)).await;
    assert_all_succeeded(&out.report);
    assert_eq!(revoke_call.num_calls(), 2000);
    assert_eq!(
        describe.num_calls(),
        2 + 3 + 10,
        "the region's two pages before the stage, three of the grown region's four \
         after it, then the 2000 groups by filter, 200 a read"
    );
    let records = change_records(&out.records);
    assert_eq!(records.len(), 2000, "each change keeps its own record");
    for record in records {
        let group = &record.resource.id;
        assert_eq!(record.after, rule_state(None), "{group} read back");
    }
}

/// The same whole region, its calls paced by EC2's default buckets: a page holds what
/// the mutation bucket lets through in a minute (350 chains), so 700 groups are two
/// pages, each read back by its own listing, and the first records are written after
/// 350 calls rather than 700.
#[tokio::test]
async fn paced_calls_make_pages_of_a_minute_of_calls() {
    let groups: Vec<String> = (0..700).map(|i| format!("sg-{i:03}")).collect();
    let (client, describe, revoke_call) = revoking_ec2_in("sg-none", groups.clone());
    let aws = crate::aws::Aws::with_paced_ec2_client(client, crate::aws::Ec2Rates::default());
    let out = run_prepared(aws, &revokes(&groups), false, false, |_| {}).await;
    assert_all_succeeded(&out.report);
    assert_eq!(revoke_call.num_calls(), 700);
    assert_eq!(
        describe.num_calls(),
        1 + 2,
        "the region listed once before the stage, and once after each page of 350"
    );
    let journal = out.journal();
    let first_ended = journal
        .iter()
        .position(|e| e.phase == journal::Phase::Succeeded)
        .expect("ends");
    assert_eq!(
        first_ended, 350,
        "a page of 350 is concluded once it is read back"
    );
}

#[tokio::test]
async fn a_bulk_read_back_that_came_too_soon_is_read_again_alone_before_failing() {
    let groups = ["sg-1", "sg-2", "sg-3"];
    let region = groups.iter().map(|g| g.to_string()).collect();
    let (client, describe, _) = revoking_ec2_in("sg-2", region);
    let out = run(client, &revokes(&groups)).await;
    assert_all_succeeded(&out.report);
    assert_eq!(
        describe.num_calls(),
        3,
        "the region's read before, the page's read back, and sg-2's own once the page's \
         did not show it revoked"
    );
}

/// A change to `group` whose call leaves its (mocked) state as it was, so it is
/// verified whenever its call answers success.
fn keep(runbook: &str, region: &str, step: &str, group: &str) -> Change {
    let mut change = revoke(group, &format!("sgr-{group}"));
    change.id = format!("{runbook}/{region}/{step}/{group}#1");
    change.runbook = runbook.into();
    change.region = region.into();
    change.step = step.into();
    change.after = change.before.clone();
    change
}

fn runbook(id: &str, steps: &[&str], requires: &[&str]) -> PlannedRunbook {
    PlannedRunbook {
        id: id.into(),
        title: id.into(),
        path: format!("{id}.yaml"),
        digest: "d".into(),
        controls: Vec::new(),
        steps: steps.iter().map(|s| s.to_string()).collect(),
        requires: requires.iter().map(|s| s.to_string()).collect(),
        parameters: Default::default(),
        given_parameters: Vec::new(),
        compliant: Default::default(),
    }
}

/// One runbook `t` (steps close, later) whose first change fails in us-east-1; `u`
/// independent of it; `v` requiring it.
fn isolation_plan() -> Plan {
    let mut plan = plan_of(vec![
        keep("t", "us-east-1", "close", "sg-bad"),
        keep("t", "us-east-1", "close", "sg-a"),
        keep("t", "us-east-1", "later", "sg-b"),
        keep("u", "us-east-1", "close", "sg-c"),
        keep("v", "us-east-1", "close", "sg-d"),
        keep("t", "eu-west-1", "close", "sg-e"),
        keep("t", "eu-west-1", "later", "sg-f"),
        keep("v", "eu-west-1", "close", "sg-g"),
    ]);
    plan.accounts[0].target.regions = vec!["us-east-1".into(), "eu-west-1".into()];
    plan.runbooks = vec![
        runbook("t", &["close", "later"], &[]),
        runbook("u", &["close"], &[]),
        runbook("v", &["close"], &["t"]),
    ];
    plan
}

/// Every group a read names has its one open rule (the calls leave it as it was),
/// however many the read names; a read of the whole region answers a page and a
/// token for more (a region larger than any stage here).
fn described() -> aws_smithy_mocks::Rule {
    mock!(Client::describe_security_group_rules).then_compute_output(|r| {
        if r.filters().is_empty() {
            return DescribeSecurityGroupRulesOutput::builder()
                .next_token("more")
                .build();
        }
        rules_output(
            r.filters()
                .iter()
                .flat_map(|f| f.values())
                .map(|group| open_rule(group, &format!("sgr-{group}")))
                .collect(),
        )
    })
}

fn isolation_client() -> (Client, aws_smithy_mocks::Rule, aws_smithy_mocks::Rule) {
    let refused = mock!(Client::revoke_security_group_egress)
        .match_requests(|r| r.group_id() == Some("sg-bad"))
        .then_http_response(|| {
            HttpResponse::new(
                StatusCode::try_from(400).expect("status"),
                SdkBody::from(
                    "<Response><Errors><Error><Code>InvalidPermission.NotFound</Code><Message>The specified rule does not exist in this security group.</Message></Error></Errors><RequestID>req-7</RequestID></Response>",
                ),
            )
        });
    let revoked = revoke_succeeds();
    let described = described();
    let client = mock_client!(
        aws_sdk_ec2,
        RuleMode::MatchAny,
        [&refused, &revoked, &described]
    );
    (client, refused, revoked)
}

fn outcome_of<'a>(report: &'a ApplyReport, id: &str) -> &'a Outcome {
    &report
        .outcomes
        .iter()
        .find(|(i, _)| i == id)
        .unwrap_or_else(|| panic!("no outcome for {id}"))
        .1
}

#[tokio::test]
async fn a_failure_holds_back_only_its_runbooks_later_steps_there_and_what_requires_it() {
    let (client, refused, revoked) = isolation_client();
    let out = run(client, &isolation_plan()).await;
    let report = &out.report;
    assert!(matches!(
        outcome_of(report, "t/us-east-1/close/sg-bad#1"),
        Outcome::Failed { code, .. } if code == "InvalidPermission.NotFound"
    ));
    for ok in [
        "t/us-east-1/close/sg-a#1",
        "u/us-east-1/close/sg-c#1",
        "t/eu-west-1/close/sg-e#1",
        "t/eu-west-1/later/sg-f#1",
        "v/eu-west-1/close/sg-g#1",
    ] {
        assert_eq!(outcome_of(report, ok), &Outcome::Succeeded, "{ok} goes on");
    }
    assert_eq!(
        outcome_of(report, "t/us-east-1/later/sg-b#1"),
        &Outcome::Skipped {
            reason: "not attempted: t/us-east-1/close/sg-bad#1 failed in us-east-1, and the later steps of runbook t build on it".into()
        }
    );
    assert_eq!(
        outcome_of(report, "v/us-east-1/close/sg-d#1"),
        &Outcome::Skipped {
            reason: "not attempted: runbook v requires t, whose change t/us-east-1/close/sg-bad#1 failed in us-east-1".into()
        }
    );
    assert_eq!(
        report.held_back(),
        vec![(
            "t/us-east-1/close/sg-bad#1",
            vec!["t/us-east-1/later/sg-b#1", "v/us-east-1/close/sg-d#1"]
        )]
    );
    assert_eq!(refused.num_calls(), 1);
    assert_eq!(revoked.num_calls(), 5);
    // Every change, made or not, has its record.
    assert_eq!(change_records(&out.records).len(), 8);
}

#[tokio::test]
async fn with_fail_fast_the_first_failure_stops_everything_after_it() {
    let (client, refused, revoked) = isolation_client();
    let out = run_with(client, &isolation_plan(), false, true).await;
    let report = &out.report;
    assert_eq!(report.failed(), 1);
    assert_eq!(refused.num_calls(), 1);
    // sg-bad's stage goes first. At concurrency 1, us-east-1's next chain waits for
    // it and is not attempted; eu-west-1's runs beside it and may be under way.
    // Nothing of a later stage starts.
    assert!(matches!(
        outcome_of(report, "t/us-east-1/close/sg-a#1"),
        Outcome::Skipped { .. }
    ));
    assert!(report.succeeded() <= 1 && revoked.num_calls() <= 1);
    for later in [
        "t/us-east-1/later/sg-b#1",
        "u/us-east-1/close/sg-c#1",
        "v/us-east-1/close/sg-d#1",
        "t/eu-west-1/later/sg-f#1",
        "v/eu-west-1/close/sg-g#1",
    ] {
        assert!(
            matches!(outcome_of(report, later), Outcome::Skipped { reason } if reason.ends_with("(--fail-fast)")),
            "{later}"
        );
    }
    assert!(matches!(
        outcome_of(report, "u/us-east-1/close/sg-c#1"),
        Outcome::Skipped { reason } if reason == "not attempted: apply stopped after t/us-east-1/close/sg-bad#1 failed (--fail-fast)"
    ));
}

#[test]
fn stages_follow_the_runbooks_order_even_when_a_step_first_appears_in_a_later_region() {
    // us-east-1 has nothing for t's first step; eu-west-1 has. The step must still run
    // before u's, as `after:` promised.
    let mut plan = plan_of(vec![
        keep("t", "us-east-1", "later", "sg-1"),
        keep("u", "us-east-1", "close", "sg-2"),
        keep("t", "eu-west-1", "close", "sg-3"),
    ]);
    plan.runbooks = vec![
        runbook("t", &["close", "later"], &[]),
        runbook("u", &["close"], &[]),
    ];
    assert_eq!(
        stages(&plan),
        vec![vec![vec![2]], vec![vec![0]], vec![vec![1]]]
    );
}

#[test]
fn each_step_is_a_stage_and_each_resource_a_chain_within_it() {
    let step = |step: &str, group: &str, n: usize| {
        let mut change = revoke(group, "sgr-1");
        change.step = step.into();
        change.id = format!("t/us-east-1/{step}/{group}#{n}");
        change
    };
    let plan = plan_of(vec![
        step("close", "sg-1", 1),
        step("close", "sg-1", 2),
        step("close", "sg-2", 1),
        step("restrict", "sg-1", 1),
    ]);
    assert_eq!(
        stages(&plan),
        vec![vec![vec![0, 1], vec![2]], vec![vec![3]]]
    );
}

fn flow_log_change(vpc: &str) -> Change {
    let logs = |with: bool| {
        let log = json!({"id": crate::template::KNOWN_AFTER_APPLY, "traffic_type": "ALL",
            "destination_type": "s3", "destination": "arn:aws:s3:::logs", "status": "ACTIVE"});
        json!({"flow_logs": if with { vec![log] } else { Vec::new() }})
    };
    Change {
        id: format!("t/us-east-1/flow/{vpc}#1"),
        runbook: "t".into(),
        account_id: "123456789012".into(),
        region: "us-east-1".into(),
        step: "flow".into(),
        action: "ec2:enable-flow-logs".into(),
        resource: ResourceRef {
            kind: ResourceKind::Vpc,
            id: vpc.into(),
            tags: Default::default(),
        },
        kind: ChangeKind::Create,
        summary: "flow log".into(),
        before: logs(false),
        after: logs(true),
        call: ApiCall {
            service: "ec2".into(),
            operation: "CreateFlowLogs".into(),
            input: json!({"ResourceIds": [vpc], "ResourceType": "VPC", "TrafficType": "ALL",
                "LogDestinationType": "s3", "LogDestination": "arn:aws:s3:::logs"}),
        },
        on_failure: OnFailure::Continue,
        wait_timeout_seconds: None,
        probe: None,
    }
}

#[tokio::test]
async fn flow_logs_go_out_in_one_call_and_a_vpc_listed_unsuccessful_is_that_vpcs_failure() {
    use aws_sdk_ec2::operation::create_flow_logs::CreateFlowLogsOutput;
    use aws_sdk_ec2::operation::describe_flow_logs::DescribeFlowLogsOutput;
    use aws_sdk_ec2::types::{
        FlowLog, LogDestinationType, TrafficType, UnsuccessfulItem, UnsuccessfulItemError,
    };
    use std::collections::BTreeSet;

    // What the mocked service holds: VPCs that have a flow log.
    let logged: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let held = logged.clone();
    let create = mock!(Client::create_flow_logs).then_compute_output(move |input| {
        let mut refused = Vec::new();
        for id in input.resource_ids() {
            if id == "vpc-2" {
                refused.push(
                    UnsuccessfulItem::builder()
                        .resource_id(id)
                        .error(
                            UnsuccessfulItemError::builder()
                                .code("InvalidParameter")
                                .message("LogDestination: bucket refused")
                                .build(),
                        )
                        .build(),
                );
            } else if let Ok(mut held) = held.lock() {
                held.insert(id.clone());
            }
        }
        CreateFlowLogsOutput::builder()
            .set_unsuccessful(Some(refused))
            .build()
    });
    let held = logged.clone();
    let describe = mock!(Client::describe_flow_logs).then_compute_output(move |input| {
        let vpc = input
            .filter()
            .first()
            .and_then(|f| f.values().first().cloned())
            .unwrap_or_default();
        let has = held.lock().map(|h| h.contains(&vpc)).unwrap_or(false);
        let logs = has.then(|| {
            FlowLog::builder()
                .flow_log_id(format!("fl-{vpc}"))
                .resource_id(&vpc)
                .traffic_type(TrafficType::All)
                .log_destination_type(LogDestinationType::S3)
                .log_destination("arn:aws:s3:::logs")
                .flow_log_status("ACTIVE")
                .build()
        });
        DescribeFlowLogsOutput::builder()
            .set_flow_logs(Some(logs.into_iter().collect()))
            .build()
    });
    let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&create, &describe]);
    let plan = plan_of(vec![
        flow_log_change("vpc-1"),
        flow_log_change("vpc-2"),
        flow_log_change("vpc-3"),
    ]);
    let out = run(client, &plan).await;
    assert_eq!(create.num_calls(), 1, "three VPCs, one CreateFlowLogs call");
    let outcomes: Vec<(&str, &Outcome)> = out
        .report
        .outcomes
        .iter()
        .map(|(id, o)| (id.as_str(), o))
        .collect();
    assert_eq!(
        outcomes[0],
        ("t/us-east-1/flow/vpc-1#1", &Outcome::Succeeded)
    );
    assert_eq!(
        outcomes[2],
        ("t/us-east-1/flow/vpc-3#1", &Outcome::Succeeded)
    );
    let Outcome::Failed { code, message } = outcomes[1].1 else {
        panic!("vpc-2 must fail, got {:?}", outcomes[1].1)
    };
    assert_eq!(code, "InvalidParameter");
    assert!(
        message.contains("vpc-2") && message.contains("Unsuccessful"),
        "{message}"
    );
    let records = change_records(&out.records);
    assert_eq!(records.len(), 3, "each VPC has its own audit record");
    assert!(matches!(records[1].outcome, Outcome::Failed { .. }));
}
