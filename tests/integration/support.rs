//! Starting emulators, seeding them with the SDK, and running the binary.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;

/// Which emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Moto,
    LocalStack,
}

/// A running emulator; stopped (its whole process group) when dropped.
pub(crate) struct Emulator {
    pub(crate) kind: Kind,
    pub(crate) endpoint: String,
    child: Child,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn http_ok(port: u16, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().expect("address"),
        Duration::from_millis(500),
    ) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

impl Emulator {
    /// Starts an emulator on a free port. The port is free when chosen but may be taken
    /// before the emulator binds it (tests start emulators side by side): an emulator
    /// that exits at once is started again on another port.
    pub(crate) fn start(kind: Kind) -> Self {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::try_start(kind) {
                Ok(emulator) => return emulator,
                Err(why) if attempt < 3 => eprintln!("{kind:?}: {why}; starting it again"),
                Err(why) => panic!("{kind:?}: {why}"),
            }
        }
    }

    fn try_start(kind: Kind) -> Result<Self, String> {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(dir.path().join("emulator.log")).expect("log file");
        let mut command = match kind {
            Kind::Moto => {
                let server = std::env::var_os("HARDEN_MOTO_SERVER")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| root().join(".venv-moto/bin/moto_server"));
                assert!(
                    server.exists(),
                    "moto is not installed at {}: run `make emulators` (or set HARDEN_MOTO_SERVER)",
                    server.display()
                );
                let mut c = Command::new(server);
                c.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
                c
            }
            Kind::LocalStack => {
                let python = std::env::var_os("HARDEN_LOCALSTACK_PYTHON")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| root().join(".venv-localstack/bin/python"));
                assert!(
                    python.exists(),
                    "LocalStack is not installed at {}: run `make emulators` (or set HARDEN_LOCALSTACK_PYTHON)",
                    python.display()
                );
                let mut c = Command::new(python);
                c.args(["-m", "localstack.runtime.main"])
                    .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
                    .env("SERVICES", "ec2,sts,s3,config,iam,kms,logs,events,sqs,sns")
                    .env("LOCALSTACK_DATA_DIR", dir.path());
                c
            }
        };
        {
            use std::os::unix::process::CommandExt;
            command.process_group(0);
        }
        let child = command
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("emulator starts");
        let health = match kind {
            Kind::Moto => "/moto-api/",
            Kind::LocalStack => "/_localstack/health",
        };
        let mut emulator = Self {
            kind,
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        while !http_ok(port, health) {
            if let Ok(Some(status)) = emulator.child.try_wait() {
                let log = std::fs::read_to_string(emulator._dir.path().join("emulator.log"))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                return Err(format!(
                    "exited ({status}) before becoming healthy on port {port}: {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!("did not become healthy on port {port} in 90 s"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(emulator)
    }

    /// Forgets every resource (moto's `/moto-api/reset`), so one server serves many
    /// trials from the same start.
    pub(crate) fn reset(&self) {
        assert_eq!(self.kind, Kind::Moto, "only moto resets");
        let address = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).expect("moto answers");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        stream
            .write_all(
                b"POST /moto-api/reset HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n",
            )
            .expect("reset sent");
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).expect("reset answered");
        assert_eq!(&head[9..12], b"200", "moto reset");
    }

    /// The emulator's process id (`make bench` reads its CPU time from /proc).
    #[allow(dead_code)]
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The requests moto has served so far, counted from its own request log (one
    /// `127.0.0.1 - - [date] "POST / HTTP/1.1" 200 -` line each). `make bench` counts
    /// this way rather than through a proxy, so the clients keep their connections
    /// open as they would against AWS.
    #[allow(dead_code)]
    pub(crate) fn requests_served(&self) -> usize {
        assert_eq!(self.kind, Kind::Moto, "moto's log is the one counted");
        std::fs::read_to_string(self._dir.path().join("emulator.log"))
            .expect("emulator log")
            .lines()
            .filter(|line| line.starts_with("127.0.0.1 - - ["))
            .count()
    }

    /// The account id the emulator answers with.
    pub(crate) fn account(&self) -> &'static str {
        match self.kind {
            Kind::Moto => "123456789012",
            Kind::LocalStack => "000000000000",
        }
    }

    /// SDK configuration for the emulator in `region`, with test credentials.
    pub(crate) fn sdk_config(&self, region: &str) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(
                aws_sdk_ec2::config::Credentials::new("test", "test", None, None, "tests"),
            ))
            .build()
    }

    /// An EC2 client for `region`.
    pub(crate) fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk_config(region))
    }

    /// An EC2 client acting in `account` with the credentials acting in `account`, as moto hands them out for AssumeRole.
    pub(crate) async fn ec2_in(&self, account: &str, region: &str) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.config_in(account, region).await)
    }

    /// SDK configuration acting in `account` (moto's AssumeRole credentials).
    pub(crate) async fn config_in(&self, account: &str, region: &str) -> aws_config::SdkConfig {
        let base = self.sdk_config(region);
        let out = aws_sdk_sts::Client::new(&base)
            .assume_role()
            .role_arn(format!(
                "arn:aws:iam::{account}:role/OrganizationAccountAccessRole"
            ))
            .role_session_name("seed")
            .send()
            .await
            .expect("assume role");
        let credentials = out.credentials().expect("credentials");
        base.into_builder()
            .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(
                aws_sdk_ec2::config::Credentials::new(
                    credentials.access_key_id(),
                    credentials.secret_access_key(),
                    Some(credentials.session_token().to_string()),
                    None,
                    "tests",
                ),
            ))
            .build()
    }

    /// An S3 client for the emulator: path-style, as emulators have no bucket DNS.
    pub(crate) fn s3(&self, region: &str) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&self.sdk_config(region))
                .force_path_style(true)
                .build(),
        )
    }

    /// A CloudTrail client for `region`.
    pub(crate) fn cloudtrail(&self, region: &str) -> aws_sdk_cloudtrail::Client {
        aws_sdk_cloudtrail::Client::new(&self.sdk_config(region))
    }

    /// An AWS Config client for `region`.
    pub(crate) fn config(&self, region: &str) -> aws_sdk_config::Client {
        aws_sdk_config::Client::new(&self.sdk_config(region))
    }

    /// A CloudWatch Logs client for `region`.
    pub(crate) fn logs(&self, region: &str) -> aws_sdk_cloudwatchlogs::Client {
        aws_sdk_cloudwatchlogs::Client::new(&self.sdk_config(region))
    }

    /// An IAM client.
    pub(crate) fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.sdk_config("us-east-1"))
    }

    pub(crate) fn harden(&self, state_dir: &Path) -> Command {
        self.harden_through(&self.endpoint, state_dir)
    }

    /// The binary sending every call to `endpoint` (a proxy in front of the emulator).
    pub(crate) fn harden_through(&self, endpoint: &str, state_dir: &Path) -> Command {
        let mut cmd = Command::cargo_bin("harden").expect("binary is built");
        cmd.arg("--endpoint-url")
            .arg(endpoint)
            .arg("--state-dir")
            .arg(state_dir)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL")
            .env("AWS_MAX_ATTEMPTS", "2")
            .env("NO_COLOR", "1")
            .current_dir(root())
            .stdin(Stdio::null());
        cmd
    }
}

impl Emulator {
    /// Asserts that `harden audit verify` finds the state directory's chain intact.
    pub(crate) fn assert_audit_verifies(&self, state_dir: &Path) {
        let mut cmd = self.harden(state_dir);
        cmd.args(["audit", "verify"]);
        let out = run(cmd);
        assert_eq!(out.code, 0, "audit verify:\n{}\n{}", out.stdout, out.stderr);
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // The emulator leads its own process group: end the whole group.
        let pid = self.child.id() as i32;
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{pid}")])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
        let _ = self.child.wait();
    }
}

/// A new VPC with a security group `name` in it, whose egress is open to the internet
/// as every new group's is; returns the group's id.
pub(crate) async fn create_open_group(ec2: &aws_sdk_ec2::Client, cidr: &str, name: &str) -> String {
    let vpc = create_vpc(ec2, cidr).await;
    ec2.create_security_group()
        .group_name(name)
        .description(name)
        .vpc_id(&vpc)
        .send()
        .await
        .expect("group")
        .group_id()
        .expect("group id")
        .to_string()
}

/// The runbooks a plan (as JSON) has changes of, each once, sorted.
pub(crate) fn runbooks_changed(plan: &serde_json::Value) -> Vec<&str> {
    let changed: std::collections::BTreeSet<&str> = plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["runbook"].as_str())
        .collect();
    changed.into_iter().collect()
}

/// Whether a group lets all traffic out to the internet (an allow-all rule to 0.0.0.0/0;
/// the egress runbook's allow-list keeps tcp 443 there).
pub(crate) fn lets_all_out(group: &aws_sdk_ec2::types::SecurityGroup) -> bool {
    group.ip_permissions_egress().iter().any(|p| {
        p.ip_protocol() == Some("-1")
            && p.ip_ranges()
                .iter()
                .any(|r| r.cidr_ip() == Some("0.0.0.0/0"))
    })
}

/// Output of one run of the binary.
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// The CLI as a test drives it: the binary against one emulator with one state
/// directory. What the tests do with harden goes through here: run a command, plan to
/// JSON, apply and take the run id, list runs.
pub(crate) struct Harness<'a> {
    emulator: &'a Emulator,
    state: &'a Path,
}

impl<'a> Harness<'a> {
    /// Drives harden against `emulator` with `state` as its state directory.
    pub(crate) fn new(emulator: &'a Emulator, state: &'a Path) -> Self {
        Self { emulator, state }
    }

    /// Runs `harden ARGS` to completion.
    pub(crate) fn run(&self, args: &[&str]) -> Run {
        let mut cmd = self.emulator.harden(self.state);
        cmd.args(args);
        run(cmd)
    }

    /// `harden plan ARGS --format json`, which must exit 0: the plan.
    pub(crate) fn plan(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["plan"];
        all.extend(args);
        all.extend(["--format", "json"]);
        let out = self.run(&all);
        assert_eq!(out.code, 0, "plan failed:\n{}\n{}", out.stdout, out.stderr);
        serde_json::from_str(&out.stdout).expect("plan JSON")
    }

    /// Runs an apply (`args` is the whole command) that must exit 0: its run id and
    /// output.
    pub(crate) fn apply(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        (run_id_of(&out.stdout), out.stdout)
    }

    /// `harden runs --format json`.
    pub(crate) fn runs(&self) -> Vec<serde_json::Value> {
        let out = self.run(&["runs", "--format", "json"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        serde_json::from_str(&out.stdout).expect("runs JSON")
    }
}

/// The operations of a plan's changes, in order.
pub(crate) fn operations(plan: &serde_json::Value) -> Vec<String> {
    plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            c["call"]["operation"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// The run id an apply's output names ("Apply RUN_ID:").
pub(crate) fn run_id_of(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Apply "))
        .and_then(|l| l.strip_suffix(':'))
        .expect("the run id")
        .to_string()
}

/// Runs a command to completion.
pub(crate) fn run(mut cmd: Command) -> Run {
    let out = cmd.output().expect("binary runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The snapshots harden took or copied (tagged `harden:source-volume`), with their tags.
pub(crate) async fn harden_snapshots(
    ec2: &aws_sdk_ec2::Client,
) -> Vec<std::collections::BTreeMap<String, String>> {
    ec2.describe_snapshots()
        .owner_ids("self")
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag-key")
                .values("harden:source-volume")
                .build(),
        )
        .send()
        .await
        .expect("snapshots")
        .snapshots()
        .iter()
        .map(|s| {
            s.tags()
                .iter()
                .map(|t| {
                    (
                        t.key().unwrap_or_default().to_string(),
                        t.value().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .collect()
}

/// Creates a VPC and returns its id.
pub(crate) async fn create_vpc(ec2: &aws_sdk_ec2::Client, cidr: &str) -> String {
    ec2.create_vpc()
        .cidr_block(cidr)
        .send()
        .await
        .expect("vpc")
        .vpc()
        .and_then(|v| v.vpc_id())
        .expect("vpc id")
        .to_string()
}

/// A VPC of `cidr` with `count` new groups named `PREFIX0`, `PREFIX1`, ..., each with
/// the allow-all egress rule a new group gets.
pub(crate) async fn create_open_groups(
    ec2: &aws_sdk_ec2::Client,
    cidr: &str,
    prefix: &str,
    count: usize,
) {
    let vpc = create_vpc(ec2, cidr).await;
    for i in 0..count {
        ec2.create_security_group()
            .group_name(format!("{prefix}{i}"))
            .description("open egress")
            .vpc_id(&vpc)
            .send()
            .await
            .expect("group");
    }
}

/// A runtime for SDK calls made by the tests themselves.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// Creates bucket `name` in `region` (us-east-1 takes no location constraint).
pub(crate) async fn create_bucket(s3: &aws_sdk_s3::Client, name: &str, region: &str) {
    let mut request = s3.create_bucket().bucket(name);
    if region != "us-east-1" {
        request = request.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(region))
                .build(),
        );
    }
    request.send().await.expect("bucket");
}
