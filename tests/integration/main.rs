//! Integration tests: the real `harden` binary and the real AWS SDK against real
//! emulators (moto server and LocalStack in host mode) that the tests start on free
//! ports of 127.0.0.1 and stop when done. One binary, one module per concern.

mod cli_errors;
mod cloudtrail;
mod config;
mod crash;
mod deploy;
mod ebs;
mod ebs_instances;
mod enforce;
mod failure_isolation;
mod faults;
mod flow_logs;
mod lease;
mod multi_account;
mod onboarding;
mod proxy;
mod regions_and_terminal;
mod respond;
mod rollback;
mod s3_account;
mod security_groups;
mod support;
mod throttling;
