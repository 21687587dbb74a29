//! Responding to AuthorizeSecurityGroupEgress within seconds, on moto: the alerting
//! runbook wires EventBridge to an encrypted queue (planned exactly, applied,
//! converging); CloudTrail-shaped events put on the default bus with `PutEvents` reach
//! the queue through the rule's pattern, and `harden watch` replaces exactly the named
//! group's open rule, audits who opened it, tells people on SNS and deletes the
//! message; duplicates and exempt groups change nothing; what is not an event is left
//! to the dead-letter queue; SIGTERM mid-batch deletes no message whose change was not
//! verified. `harden respond` acts in the account the event names, by policy, and
//! refuses malformed events without a change.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Emulator, Kind, block_on, create_open_group, lets_all_out, run};

const REGION: &str = "us-east-1";
const AUTO: &str = "version: 1\ndefault: auto\n";
const ALERT: &str = "runbooks/alert-on-security-changes.yaml";
const EGRESS: &str = "runbooks/restrict-sg-egress.yaml";
const QUEUE: &str = "harden-security-events";
const DEAD_LETTER: &str = "harden-security-events-dlq";
/// The alerting rule has the queue's name by default.
const RULE: &str = "harden-security-events";
const MALLORY: &str = "arn:aws:iam::123456789012:user/mallory";

/// An AuthorizeSecurityGroupEgress record as CloudTrail writes it (AWS's "CloudTrail
/// record contents"), opening all traffic of `group` to 0.0.0.0/0.
fn opened_egress(account: &str, group: &str, event_id: &str) -> Value {
    json!({
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "IAMUser",
            "principalId": "AIDAEXAMPLEMALLORY",
            "arn": MALLORY.replace("123456789012", account),
            "accountId": account,
            "accessKeyId": "AKIAEXAMPLEMALLORY",
            "userName": "mallory"
        },
        "eventTime": "2026-12-01T10:00:00Z",
        "eventSource": "ec2.amazonaws.com",
        "eventName": "AuthorizeSecurityGroupEgress",
        "awsRegion": REGION,
        "sourceIPAddress": "203.0.113.7",
        "userAgent": "aws-cli/2.22.0 md/command#ec2.authorize-security-group-egress",
        "requestParameters": {
            "groupId": group,
            "ipPermissions": {"items": [{
                "ipProtocol": "-1",
                "groups": {},
                "ipRanges": {"items": [{"cidrIp": "0.0.0.0/0"}]},
                "ipv6Ranges": {},
                "prefixListIds": {}
            }]}
        },
        "responseElements": {
            "requestId": "3f9f2c1e-0000-4000-8000-000000000001",
            "_return": true,
            "securityGroupRuleSet": {"items": [{"groupId": group, "isEgress": true}]}
        },
        "requestID": "3f9f2c1e-0000-4000-8000-000000000001",
        "eventID": event_id,
        "readOnly": false,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": account,
        "eventCategory": "Management"
    })
}

/// The EventBridge event "AWS API Call via CloudTrail" wrapping a record.
fn on_the_bus(record: &Value) -> Value {
    json!({
        "version": "0",
        "id": format!("eb-{}", record["eventID"].as_str().unwrap_or_default()),
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.ec2",
        "account": record["recipientAccountId"],
        "time": record["eventTime"],
        "region": REGION,
        "resources": [],
        "detail": record
    })
}

/// Puts records on the default bus as CloudTrail would, through the rule to the queue.
async fn emit(emulator: &Emulator, records: &[Value]) {
    let events = aws_sdk_eventbridge::Client::new(&emulator.sdk_config(REGION));
    for chunk in records.chunks(10) {
        let entries = chunk
            .iter()
            .map(|r| {
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .source("aws.ec2")
                    .detail_type("AWS API Call via CloudTrail")
                    .detail(r.to_string())
                    .build()
            })
            .collect();
        let out = events
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .expect("put events");
        assert_eq!(out.failed_entry_count(), 0);
    }
}

fn sqs(emulator: &Emulator) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&emulator.sdk_config(REGION))
}

async fn queue_url(emulator: &Emulator, name: &str) -> String {
    sqs(emulator)
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .expect("the queue exists")
        .queue_url()
        .expect("url")
        .to_string()
}

/// Messages in the queue, visible or in flight.
async fn messages_in(emulator: &Emulator, name: &str) -> usize {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let url = queue_url(emulator, name).await;
    let out = sqs(emulator)
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("attributes");
    let attributes = out.attributes().cloned().unwrap_or_default();
    [
        A::ApproximateNumberOfMessages,
        A::ApproximateNumberOfMessagesNotVisible,
    ]
    .iter()
    .map(|a| {
        attributes
            .get(a)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
    })
    .sum()
}

async fn group(emulator: &Emulator, account: &str, id: &str) -> aws_sdk_ec2::types::SecurityGroup {
    let ec2 = if account == emulator.account() {
        emulator.ec2(REGION)
    } else {
        emulator.ec2_in(account, REGION).await
    };
    ec2.describe_security_groups()
        .group_ids(id)
        .send()
        .await
        .expect("group")
        .security_groups()[0]
        .clone()
}

fn allows_https_out(group: &aws_sdk_ec2::types::SecurityGroup) -> bool {
    group.ip_permissions_egress().iter().any(|p| {
        p.ip_protocol() == Some("tcp")
            && p.from_port() == Some(443)
            && p.ip_ranges()
                .iter()
                .any(|r| r.cidr_ip() == Some("0.0.0.0/0"))
    })
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

fn audit_changes(emulator: &Emulator, state: &Path) -> Vec<Value> {
    let mut cmd = emulator.harden(state);
    cmd.args(["audit", "show", "--format", "json"]);
    let out = run(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let records: Vec<Value> = serde_json::from_str(&out.stdout).expect("JSON");
    records
        .into_iter()
        .filter(|r| r["type"] == "change")
        .collect()
}

/// Applies the alerting runbook with `params`, checks that a second plan has nothing
/// left to do, and returns its queue's URL.
fn wire_alerts(emulator: &Emulator, state: &Path, params: &[&str]) -> String {
    let mut cmd = emulator.harden(state);
    cmd.args(["apply", ALERT, "--region", REGION, "--yes"])
        .args(params);
    let out = run(cmd);
    assert_eq!(out.code, 0, "apply:\n{}\n{}", out.stdout, out.stderr);
    let mut cmd = emulator.harden(state);
    cmd.args(["plan", ALERT, "--region", REGION, "--detailed-exitcode"])
        .args(params);
    let out = run(cmd);
    assert_eq!(out.code, 0, "converges:\n{}", out.stdout);
    block_on(queue_url(emulator, QUEUE))
}

fn watch(emulator: &Emulator, state: &Path, url: &str, extra: &[&str]) -> crate::support::Run {
    let mut cmd = emulator.harden(state);
    cmd.args(["watch", "--queue", url, "runbooks/", "--region", REGION])
        .args(extra);
    run(cmd)
}

#[test]
fn the_alerting_runbook_routes_an_opened_egress_to_watch_which_replaces_exactly_that_rule() {
    let emulator = Emulator::start(Kind::Moto);
    let ec2 = emulator.ec2(REGION);
    let (target, bystander, exempt) = block_on(async {
        let target = create_open_group(&ec2, "10.60.0.0/24", "opened").await;
        let bystander = create_open_group(&ec2, "10.61.0.0/24", "bystander").await;
        let exempt = create_open_group(&ec2, "10.62.0.0/24", "exempt").await;
        ec2.create_tags()
            .resources(&exempt)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key("harden:exempt")
                    .value("true")
                    .build(),
            )
            .send()
            .await
            .expect("tag");
        (target, bystander, exempt)
    });
    let state = tempfile::tempdir().expect("state");
    let files = tempfile::tempdir().expect("files");
    let policy = write(files.path(), "policy.yaml", AUTO);
    // Failed deliveries come back after 1 s and go to the dead-letter queue at the
    // second receive, so the test sees the redrive without waiting minutes.
    let params = [
        "--param",
        "visibility_timeout_seconds=1",
        "--param",
        "max_receive_count=2",
        "--param",
        "notify_email=oncall@example.com",
    ];

    // The plan is exact: the dead-letter queue, the queue, the topic and its
    // subscription, the rule and its target, in that order.
    let mut cmd = emulator.harden(state.path());
    cmd.args(["plan", ALERT, "--region", REGION, "--format", "json"])
        .args(params);
    let out = run(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: Value = serde_json::from_str(&out.stdout).expect("plan JSON");
    let operations: Vec<(&str, &str)> = plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["resource"]["id"].as_str().expect("id"),
                c["call"]["operation"].as_str().expect("operation"),
            )
        })
        .collect();
    assert_eq!(
        operations,
        [
            (DEAD_LETTER, "CreateQueue"),
            (QUEUE, "CreateQueue"),
            ("harden-security-events-notify", "CreateTopic"),
            ("harden-security-events-notify", "Subscribe"),
            (RULE, "PutRule"),
            (RULE, "PutTargets"),
        ]
    );
    let pattern: Value = serde_json::from_str(
        plan["changes"][4]["call"]["input"]["EventPattern"]
            .as_str()
            .expect("a pattern"),
    )
    .expect("JSON");
    let names = pattern["detail"]["eventName"].as_array().expect("names");
    assert!(names.contains(&json!("AuthorizeSecurityGroupEgress")));
    assert!(names.contains(&json!("StopLogging")));

    let url = wire_alerts(&emulator, state.path(), &params);
    block_on(async {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let attributes = sqs(&emulator)
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(A::All)
            .send()
            .await
            .expect("attributes")
            .attributes()
            .cloned()
            .unwrap_or_default();
        assert_eq!(attributes[&A::SqsManagedSseEnabled], "true");
        let policy: Value = serde_json::from_str(&attributes[&A::Policy]).expect("policy");
        assert_eq!(
            policy["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"],
            "arn:aws:events:us-east-1:123456789012:rule/harden-security-events"
        );
        let redrive: Value = serde_json::from_str(&attributes[&A::RedrivePolicy]).expect("redrive");
        assert_eq!(
            redrive["deadLetterTargetArn"],
            "arn:aws:sqs:us-east-1:123456789012:harden-security-events-dlq"
        );
    });

    // People hear of it on the topic; a queue subscribed to it shows what they read.
    let topic = "arn:aws:sns:us-east-1:123456789012:harden-security-events-notify";
    let inbox = block_on(async {
        let url = sqs(&emulator)
            .create_queue()
            .queue_name("inbox")
            .send()
            .await
            .expect("inbox")
            .queue_url()
            .expect("url")
            .to_string();
        aws_sdk_sns::Client::new(&emulator.sdk_config(REGION))
            .subscribe()
            .topic_arn(topic)
            .protocol("sqs")
            .endpoint("arn:aws:sqs:us-east-1:123456789012:inbox")
            .attributes("RawMessageDelivery", "true")
            .send()
            .await
            .expect("subscribe");
        url
    });

    block_on(async {
        ec2.authorize_security_group_egress()
            .group_id(&target)
            .ip_permissions(
                aws_sdk_ec2::types::IpPermission::builder()
                    .ip_protocol("udp")
                    .from_port(53)
                    .to_port(53)
                    .ip_ranges(
                        aws_sdk_ec2::types::IpRange::builder()
                            .cidr_ip("0.0.0.0/0")
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("open");
        emit(
            &emulator,
            &[opened_egress(emulator.account(), &target, "ev-1")],
        )
        .await;
    });
    let out = watch(
        &emulator,
        state.path(),
        &url,
        &["--policy", &policy, "--until-idle", "3", "--notify", topic],
    );
    assert_eq!(out.code, 0, "watch:\n{}\n{}", out.stdout, out.stderr);
    block_on(async {
        let fixed = group(&emulator, emulator.account(), &target).await;
        assert!(!lets_all_out(&fixed), "the opened group is closed");
        assert!(allows_https_out(&fixed), "and keeps the allow-list");
        assert!(
            !fixed
                .ip_permissions_egress()
                .iter()
                .any(|p| p.ip_protocol() == Some("udp")),
            "every open rule of the named group is replaced"
        );
        assert!(lets_all_out(
            &group(&emulator, emulator.account(), &bystander).await
        ));
        assert!(lets_all_out(
            &group(&emulator, emulator.account(), &exempt).await
        ));
        assert_eq!(messages_in(&emulator, QUEUE).await, 0);
    });
    let changes = audit_changes(&emulator, state.path());
    let responded: Vec<&Value> = changes.iter().filter(|c| c["cause"].is_object()).collect();
    assert!(!responded.is_empty());
    for change in &responded {
        assert_eq!(
            change["resource"]["id"],
            json!(target),
            "only the named group"
        );
        assert_eq!(change["outcome"]["status"], "succeeded");
        let cause = &change["cause"];
        assert_eq!(cause["event_id"], "ev-1");
        assert_eq!(cause["actor_arn"], MALLORY);
        assert_eq!(cause["actor_type"], "IAMUser");
        assert_eq!(cause["access_key_id"], "AKIAEXAMPLEMALLORY");
        assert_eq!(cause["source_ip_address"], "203.0.113.7");
        assert_eq!(
            cause["request_parameters"]["ipPermissions"]["items"][0]["ipRanges"]["items"][0]["cidrIp"],
            "0.0.0.0/0",
            "the rule opened, exactly as CloudTrail recorded it"
        );
    }
    let told = block_on(async {
        sqs(&emulator)
            .receive_message()
            .queue_url(&inbox)
            .wait_time_seconds(2)
            .send()
            .await
            .expect("inbox")
            .messages()
            .iter()
            .filter_map(|m| m.body().map(str::to_string))
            .collect::<Vec<_>>()
    });
    assert_eq!(told.len(), 1, "{told:?}");
    for words in [
        MALLORY,
        "203.0.113.7",
        &format!("opened outbound traffic of {target}: all traffic with 0.0.0.0/0"),
        "harden reverted it and verified the result",
    ] {
        assert!(told[0].contains(words), "{words} in: {}", told[0]);
    }

    // A duplicate and an event for the exempt group change nothing and are deleted;
    // a message that is not an event and an event no runbook matches are left, and
    // go to the dead-letter queue.
    let before = audit_changes(&emulator, state.path()).len();
    block_on(async {
        emit(
            &emulator,
            &[
                opened_egress(emulator.account(), &target, "ev-1"),
                opened_egress(emulator.account(), &exempt, "ev-2"),
            ],
        )
        .await;
        let queue = sqs(&emulator);
        queue
            .send_message()
            .queue_url(&url)
            .message_body("{\"detail-type\": \"AWS API Call via CloudTrail\", \"det")
            .send()
            .await
            .expect("send");
        let mut unrelated = opened_egress(emulator.account(), &target, "ev-3");
        unrelated["eventName"] = json!("DescribeSecurityGroups");
        queue
            .send_message()
            .queue_url(&url)
            .message_body(on_the_bus(&unrelated).to_string())
            .send()
            .await
            .expect("send");
    });
    let out = watch(
        &emulator,
        state.path(),
        &url,
        &["--policy", &policy, "--until-idle", "4"],
    );
    assert_eq!(out.code, 0, "watch:\n{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        audit_changes(&emulator, state.path()).len(),
        before,
        "no change made:\n{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&exempt) && out.stdout.contains("exempt"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("not an event harden reads"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("no runbook matches DescribeSecurityGroups"),
        "{}",
        out.stderr
    );
    assert!(lets_all_out(&block_on(group(
        &emulator,
        emulator.account(),
        &exempt
    ))));
    assert_eq!(block_on(messages_in(&emulator, QUEUE)), 0);
    assert_eq!(
        block_on(messages_in(&emulator, DEAD_LETTER)),
        2,
        "the two messages no runbook handles are dead-lettered"
    );
    emulator.assert_audit_verifies(state.path());
}

#[test]
fn sigterm_mid_batch_deletes_no_message_whose_change_was_not_verified() {
    let emulator = Emulator::start(Kind::Moto);
    let ec2 = emulator.ec2(REGION);
    let groups: Vec<String> = block_on(async {
        let mut groups = Vec::new();
        for n in 0..10 {
            groups.push(create_open_group(&ec2, &format!("10.70.{n}.0/24"), "opened").await);
        }
        groups
    });
    let state = tempfile::tempdir().expect("state");
    let files = tempfile::tempdir().expect("files");
    let policy = write(files.path(), "policy.yaml", AUTO);
    // The alerting runbook alone: the groups must stay open for the events.
    let url = wire_alerts(&emulator, state.path(), &[]);
    let records: Vec<Value> = groups
        .iter()
        .enumerate()
        .map(|(n, g)| opened_egress(emulator.account(), g, &format!("ev-{n}")))
        .collect();
    block_on(emit(&emulator, &records));

    let mut cmd: Command = emulator.harden(state.path());
    cmd.args(["watch", "--queue", &url, EGRESS, "--region", REGION])
        .args(["--policy", &policy, "--concurrency", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("watch starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    // Once the first event is handled, the batch is in hand: stop mid-batch.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("line");
        let handled = line.starts_with("message ") && line.contains("compliant");
        seen.push(line);
        if handled {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no event handled:\n{}",
            seen.join("\n")
        );
    }
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let rest: Vec<String> = lines.map_while(std::result::Result::ok).collect();
    let status = child.wait().expect("watch exits");
    assert_eq!(
        status.code(),
        Some(0),
        "{}\n{}",
        seen.join("\n"),
        rest.join("\n")
    );
    let all = format!("{}\n{}", seen.join("\n"), rest.join("\n"));
    assert!(all.contains("stopping"), "{all}");
    block_on(async {
        let mut open = 0;
        for g in &groups {
            if lets_all_out(&group(&emulator, emulator.account(), g).await) {
                open += 1;
            }
        }
        let left = messages_in(&emulator, QUEUE).await;
        assert!(open > 0, "stopped mid-batch, before every event:\n{all}");
        assert_eq!(
            left, open,
            "every deleted message's group is fixed, and every fixed group's message deleted:\n{all}"
        );
    });
    emulator.assert_audit_verifies(state.path());
}

#[test]
fn respond_acts_in_the_events_account_by_policy_and_refuses_malformed_events() {
    let emulator = Emulator::start(Kind::Moto);
    let member = "111111111111";
    let (own, theirs) = block_on(async {
        let own = create_open_group(&emulator.ec2(REGION), "10.80.0.0/24", "own").await;
        let member_ec2 = emulator.ec2_in(member, REGION).await;
        let theirs = create_open_group(&member_ec2, "10.81.0.0/24", "theirs").await;
        (own, theirs)
    });
    let state = tempfile::tempdir().expect("state");
    let files = tempfile::tempdir().expect("files");
    let auto = write(files.path(), "auto.yaml", AUTO);
    let report = write(files.path(), "report.yaml", "version: 1\ndefault: report\n");
    let respond = |event: &str, policy: &str| {
        let mut cmd = emulator.harden(state.path());
        cmd.args(["respond", "--event", event, EGRESS, "--policy", policy]);
        run(cmd)
    };

    // --region limits where harden acts: an event elsewhere is left, said so, exit 0.
    let own_event_path = write(
        files.path(),
        "own-elsewhere.json",
        &opened_egress(emulator.account(), &own, "ev-elsewhere").to_string(),
    );
    let mut cmd = emulator.harden(state.path());
    cmd.args([
        "respond",
        "--event",
        &own_event_path,
        EGRESS,
        "--policy",
        &auto,
    ])
    .args(["--region", "eu-west-1"]);
    let out = run(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("in us-east-1 is outside the regions acted in (eu-west-1)"),
        "{}",
        out.stdout
    );
    assert!(lets_all_out(&block_on(group(
        &emulator,
        emulator.account(),
        &own
    ))));

    // Policy report: the rule is left, reported, exit 2.
    let own_event = write(
        files.path(),
        "own.json",
        &on_the_bus(&opened_egress(emulator.account(), &own, "ev-own")).to_string(),
    );
    let out = respond(&own_event, &report);
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("reported, not made"), "{}", out.stdout);
    assert!(lets_all_out(&block_on(group(
        &emulator,
        emulator.account(),
        &own
    ))));

    // Another account's event acts in that account (AssumeRole), and only there.
    let their_event = write(
        files.path(),
        "theirs.json",
        &opened_egress(member, &theirs, "ev-theirs").to_string(),
    );
    let out = respond(&their_event, &auto);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(!lets_all_out(&block_on(group(&emulator, member, &theirs))));
    assert!(lets_all_out(&block_on(group(
        &emulator,
        emulator.account(),
        &own
    ))));
    let changes = audit_changes(&emulator, state.path());
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["cause"]["account_id"], member);
    assert_eq!(
        changes[0]["cause"]["actor_arn"],
        format!("arn:aws:iam::{member}:user/mallory")
    );

    // Again: compliant now, exit 0, nothing changed.
    let out = respond(&their_event, &auto);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("needs no change"), "{}", out.stdout);
    assert_eq!(audit_changes(&emulator, state.path()).len(), 1);

    // Standard input works; an event no runbook matches is exit 0, saying so.
    let mut unrelated = opened_egress(emulator.account(), &own, "ev-x");
    unrelated["eventName"] = json!("RunInstances");
    let mut cmd = emulator.harden(state.path());
    cmd.args(["respond", "--event", "-", EGRESS, "--policy", &auto])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("respond starts");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(unrelated.to_string().as_bytes())
            .expect("write");
    }
    let out = child.wait_with_output().expect("respond exits");
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no runbook matches RunInstances"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Malformed: cut short, or a field of the wrong type: exit 1 naming where, no change.
    let text = on_the_bus(&opened_egress(emulator.account(), &own, "ev-cut")).to_string();
    let cut = write(files.path(), "cut.json", &text[..text.len() / 2]);
    let out = respond(&cut, &auto);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains(&format!("{cut}:1:")), "{}", out.stderr);
    let mut wrong = opened_egress(emulator.account(), &own, "ev-wrong");
    wrong["eventTime"] = json!(17);
    let wrong = write(files.path(), "wrong.json", &wrong.to_string());
    let out = respond(&wrong, &auto);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("eventTime"), "{}", out.stderr);
    assert!(lets_all_out(&block_on(group(
        &emulator,
        emulator.account(),
        &own
    ))));
    assert_eq!(audit_changes(&emulator, state.path()).len(), 1);

    // watch on a queue that does not exist stops with the reason (an idle exit is 0).
    let missing = format!("{}/123456789012/no-such-queue", emulator.endpoint);
    let mut cmd = emulator.harden(state.path());
    cmd.args(["watch", "--queue", &missing, EGRESS, "--region", REGION])
        .args(["--until-idle", "30"]);
    let out = run(cmd);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("ReceiveMessage failed"),
        "{}",
        out.stderr
    );
    emulator.assert_audit_verifies(state.path());
}

/// LocalStack emulates EventBridge, SQS and SNS too: the alerting runbook applies and
/// converges there, and an event put on its bus reaches `watch` through the rule.
#[test]
fn the_alerting_runbook_and_watch_work_on_localstack() {
    let emulator = Emulator::start(Kind::LocalStack);
    let account = emulator.account();
    let ec2 = emulator.ec2(REGION);
    let target = block_on(create_open_group(&ec2, "10.63.0.0/24", "opened"));
    let state = tempfile::tempdir().expect("state");
    let files = tempfile::tempdir().expect("files");
    let policy = write(files.path(), "policy.yaml", AUTO);
    // A member account sending to a central bus makes no queue of its own.
    let central = "arn:aws:events:us-east-1:999999999999:event-bus/security";
    let mut cmd = emulator.harden(state.path());
    cmd.args(["plan", ALERT, "--region", REGION, "--format", "json"])
        .args(["--param", &format!("target_arn={central}")])
        .args([
            "--param",
            "target_role_arn=arn:aws:iam::000000000000:role/to-central",
        ]);
    let out = run(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: Value = serde_json::from_str(&out.stdout).expect("plan JSON");
    let changes = plan["changes"].as_array().expect("changes");
    let operations: Vec<&str> = changes
        .iter()
        .filter_map(|c| c["call"]["operation"].as_str())
        .collect();
    assert_eq!(operations, ["PutRule", "PutTargets"]);
    assert_eq!(
        changes[1]["call"]["input"]["Targets"][0],
        json!({"Id": "harden", "Arn": central, "RoleArn": "arn:aws:iam::000000000000:role/to-central"})
    );

    let url = wire_alerts(&emulator, state.path(), &[]);
    block_on(emit(&emulator, &[opened_egress(account, &target, "ev-ls")]));
    let out = watch(
        &emulator,
        state.path(),
        &url,
        &["--policy", &policy, "--until-idle", "4"],
    );
    assert_eq!(out.code, 0, "watch:\n{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("; deleted"), "{}", out.stderr);
    let fixed = block_on(group(&emulator, account, &target));
    assert!(!lets_all_out(&fixed));
    assert!(allows_https_out(&fixed));
    assert_eq!(block_on(messages_in(&emulator, QUEUE)), 0);
    emulator.assert_audit_verifies(state.path());
}

/// EC2 refuses the remediation (a proxy answers UnauthorizedOperation, as EC2 does to a
/// role without the right): the message is not deleted, comes back after the visibility
/// timeout, fails again and goes to the dead-letter queue, each attempt audited with
/// its event. A periodic sweep then catches what no event named.
#[test]
fn a_failing_remediation_is_retried_then_dead_lettered_and_a_sweep_catches_the_rest() {
    use crate::proxy::{Answer, Proxy};
    let emulator = Emulator::start(Kind::Moto);
    let ec2 = emulator.ec2(REGION);
    let (refused, unnoticed) = block_on(async {
        (
            create_open_group(&ec2, "10.64.0.0/24", "refused").await,
            create_open_group(&ec2, "10.65.0.0/24", "unnoticed").await,
        )
    });
    let state = tempfile::tempdir().expect("state");
    let files = tempfile::tempdir().expect("files");
    let policy = write(files.path(), "policy.yaml", AUTO);
    let url = wire_alerts(
        &emulator,
        state.path(),
        &[
            "--param",
            "visibility_timeout_seconds=1",
            "--param",
            "max_receive_count=2",
        ],
    );
    block_on(emit(
        &emulator,
        &[opened_egress(emulator.account(), &refused, "ev-r")],
    ));

    let refusing = Proxy::start(&emulator.endpoint, |request| {
        let body = request.text();
        if body.contains("Action=ModifySecurityGroupRules")
            || body.contains("Action=RevokeSecurityGroupEgress")
        {
            Answer::Respond(
                403,
                "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>proxy</RequestID></Response>".into(),
            )
        } else {
            Answer::Forward
        }
    });
    let mut cmd = emulator.harden_through(&refusing.endpoint, state.path());
    cmd.args(["watch", "--queue", &url, EGRESS, "--region", REGION])
        .args(["--policy", &policy, "--until-idle", "4"]);
    let out = run(cmd);
    assert_eq!(out.code, 0, "watch:\n{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("failed: left on the queue to be retried"),
        "{}",
        out.stderr
    );
    assert!(lets_all_out(&block_on(group(
        &emulator,
        emulator.account(),
        &refused
    ))));
    assert_eq!(block_on(messages_in(&emulator, QUEUE)), 0);
    assert_eq!(
        block_on(messages_in(&emulator, DEAD_LETTER)),
        1,
        "retried once, then dead-lettered"
    );
    let attempts: Vec<Value> = audit_changes(&emulator, state.path())
        .into_iter()
        .filter(|c| c["outcome"]["status"] == "failed")
        .collect();
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    for attempt in &attempts {
        assert_eq!(attempt["outcome"]["code"], "UnauthorizedOperation");
        assert_eq!(attempt["cause"]["event_id"], "ev-r");
    }

    // No event names the second group; the sweep finds both.
    let mut cmd = emulator.harden(state.path());
    cmd.args(["watch", "--queue", &url, EGRESS, "--region", REGION])
        .args([
            "--policy",
            &policy,
            "--until-idle",
            "3",
            "--sweep-every",
            "1s",
        ]);
    let out = run(cmd);
    assert_eq!(out.code, 0, "watch:\n{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("full sweep"), "{}", out.stderr);
    for g in [&refused, &unnoticed] {
        assert!(
            !lets_all_out(&block_on(group(&emulator, emulator.account(), g))),
            "{g}"
        );
    }
    emulator.assert_audit_verifies(state.path());

    // `harden runs` tells the complete, the failed and (a journal cut as a killed
    // process leaves it) the interrupted apart.
    let runs_dir = state.path().join("runs");
    let list_runs = || {
        let mut cmd = emulator.harden(state.path());
        cmd.args(["runs", "--format", "json"]);
        let out = run(cmd);
        assert_eq!(out.code, 0, "{}", out.stderr);
        serde_json::from_str::<Vec<Value>>(&out.stdout).expect("JSON")
    };
    // Oldest first: the alerting runbook's apply.
    let first = list_runs()[0]["run_id"]
        .as_str()
        .expect("a run id")
        .to_string();
    let killed = runs_dir.join("29991231T000000Z-killed");
    std::fs::create_dir_all(&killed).expect("dir");
    std::fs::copy(
        runs_dir.join(&first).join("plan.json"),
        killed.join("plan.json"),
    )
    .expect("plan");
    let journal =
        std::fs::read_to_string(runs_dir.join(&first).join("journal.jsonl")).expect("journal");
    let started = journal.lines().next().expect("a started line");
    std::fs::write(
        killed.join("journal.jsonl"),
        format!("{started}\n{{\"time\":\"2026-12-"),
    )
    .expect("write");
    let runs = list_runs();
    let states: Vec<&str> = runs.iter().filter_map(|r| r["state"].as_str()).collect();
    assert_eq!(runs[0]["run_id"], json!(first));
    assert_eq!(
        runs[0]["changes"], 4,
        "the dead-letter queue, the queue, the rule, its target"
    );
    assert_eq!(states[0], "complete", "{runs:#?}");
    assert_eq!(
        states.iter().filter(|s| **s == "failed").count(),
        2,
        "the two refused attempts: {runs:#?}"
    );
    let last = runs
        .iter()
        .find(|r| r["run_id"] == "29991231T000000Z-killed")
        .expect("the killed one");
    assert_eq!(last["state"], "interrupted");
    assert_eq!(last["in_flight"], 1);
    assert_eq!(
        last["not_reached"],
        json!(runs[0]["changes"].as_u64().expect("n") - 1)
    );
    assert_eq!(last["accounts"], json!([emulator.account()]));
}

/// Queues and a topic of the alerting runbook's names that drifted (the dead-letter
/// queue kept 30 s invisible and unencrypted, the topic unencrypted) are corrected in
/// place, each with one call, and the next plan finds nothing to do.
#[test]
fn drifted_queues_and_topic_of_the_alerting_runbook_are_corrected_in_place_on_moto() {
    let emulator = Emulator::start(Kind::Moto);
    let state = tempfile::tempdir().expect("state");
    let sns = aws_sdk_sns::Client::new(&emulator.sdk_config(REGION));
    let topic = block_on(async {
        sqs(&emulator)
            .create_queue()
            .queue_name(DEAD_LETTER)
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
                "30",
            )
            .send()
            .await
            .expect("drifted dead-letter queue");
        sns.create_topic()
            .name("harden-security-events-notify")
            .send()
            .await
            .expect("unencrypted topic")
            .topic_arn()
            .expect("arn")
            .to_string()
    });
    let mut cmd = emulator.harden(state.path());
    cmd.args([
        "apply",
        ALERT,
        "--region",
        REGION,
        "--yes",
        "--param",
        "notify_email=oncall@example.com",
    ]);
    let out = run(cmd);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for operation in ["SetQueueAttributes", "SetTopicAttributes"] {
        assert!(
            out.stdout.contains(operation),
            "{operation}:\n{}",
            out.stdout
        );
    }
    block_on(async {
        let url = queue_url(&emulator, DEAD_LETTER).await;
        let attributes = sqs(&emulator)
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
            .send()
            .await
            .expect("attributes");
        let attributes = attributes.attributes().expect("attributes");
        let get = |name: aws_sdk_sqs::types::QueueAttributeName| {
            attributes.get(&name).map(String::as_str)
        };
        assert_eq!(
            get(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout),
            Some("120")
        );
        assert_eq!(
            get(aws_sdk_sqs::types::QueueAttributeName::SqsManagedSseEnabled),
            Some("true")
        );
        let topic = sns
            .get_topic_attributes()
            .topic_arn(&topic)
            .send()
            .await
            .expect("topic attributes");
        assert!(
            topic
                .attributes()
                .and_then(|a| a.get("KmsMasterKeyId"))
                .is_some_and(|k| !k.is_empty()),
            "the topic is encrypted: {:?}",
            topic.attributes()
        );
    });
    let mut cmd = emulator.harden(state.path());
    cmd.args([
        "plan",
        ALERT,
        "--region",
        REGION,
        "--detailed-exitcode",
        "--param",
        "notify_email=oncall@example.com",
    ]);
    let out = run(cmd);
    assert_eq!(out.code, 0, "converges:\n{}", out.stdout);
}
