//! The accounts of an AWS Organization, listed from its management account (or a
//! delegated administrator): every account, or those under given organizational
//! units (nested units included), with their tags. Accounts that are not active
//! (suspended, pending closure) are skipped and listed, never planned.

use std::collections::BTreeMap;

use aws_sdk_organizations::Client;
use aws_sdk_organizations::types::{Account, AccountState, AccountStatus};
use futures::stream::{self, StreamExt, TryStreamExt};

use super::Target;
use crate::aws::Answer;
use crate::error::{Error, Result};

/// Calls to Organizations made at once (its request rate is low).
const CONCURRENCY: usize = 4;

/// What the organization holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listing {
    /// Active accounts, in account id order.
    pub active: Vec<Target>,
    /// Accounts left out because they are not active, with their state.
    pub inactive: Vec<(Target, String)>,
}

/// Lists the organization's accounts (only those under `units` when any are given),
/// with their tags.
pub async fn list(client: &Client, units: &[String]) -> Result<Listing> {
    let accounts = if units.is_empty() {
        all_accounts(client).await?
    } else {
        let mut found = Vec::new();
        for unit in units {
            found.extend(accounts_under(client, unit).await?);
        }
        found
    };
    let mut by_id: BTreeMap<String, Account> = BTreeMap::new();
    for account in accounts {
        if let Some(id) = account.id() {
            by_id.insert(id.to_string(), account);
        }
    }
    let tagged: Vec<(Account, BTreeMap<String, String>)> = stream::iter(by_id.into_values())
        .map(|account| async move {
            let tags = tags_of(client, account.id().unwrap_or_default()).await?;
            Ok::<_, Error>((account, tags))
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    let mut listing = Listing::default();
    for (account, tags) in tagged {
        let target = Target {
            id: account.id().unwrap_or_default().to_string(),
            name: account.name().map(str::to_string),
            regions: Vec::new(),
            role: None,
            external_id: None,
            tags,
        };
        match state(&account) {
            None => listing.active.push(target),
            Some(state) => listing.inactive.push((target, state)),
        }
    }
    Ok(listing)
}

/// `None` for an active account, its state otherwise. `State` replaces the older
/// `Status`; an answer may carry either.
fn state(account: &Account) -> Option<String> {
    match (account.state(), account.status()) {
        (Some(AccountState::Active), _) | (None, Some(AccountStatus::Active)) => None,
        (Some(state), _) => Some(state.as_str().to_string()),
        (None, Some(status)) => Some(status.as_str().to_string()),
        (None, None) => Some("UNKNOWN".into()),
    }
}

async fn all_accounts(client: &Client) -> Result<Vec<Account>> {
    let mut accounts = Vec::new();
    let mut pages = client
        .list_accounts()
        .max_results(20)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.or_failure("ListAccounts")?;
        accounts.extend(page.accounts().iter().cloned());
    }
    Ok(accounts)
}

/// The accounts directly under `unit` and under every unit below it.
async fn accounts_under(client: &Client, unit: &str) -> Result<Vec<Account>> {
    let mut accounts = Vec::new();
    let mut todo = vec![unit.to_string()];
    while let Some(parent) = todo.pop() {
        let mut pages = client
            .list_accounts_for_parent()
            .parent_id(&parent)
            .max_results(20)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.or_failure("ListAccountsForParent")?;
            accounts.extend(page.accounts().iter().cloned());
        }
        let mut pages = client
            .list_organizational_units_for_parent()
            .parent_id(&parent)
            .max_results(20)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.or_failure("ListOrganizationalUnitsForParent")?;
            todo.extend(
                page.organizational_units()
                    .iter()
                    .filter_map(|u| u.id().map(str::to_string)),
            );
        }
    }
    Ok(accounts)
}

async fn tags_of(client: &Client, account: &str) -> Result<BTreeMap<String, String>> {
    let mut tags = BTreeMap::new();
    let mut pages = client
        .list_tags_for_resource()
        .resource_id(account)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.or_failure("ListTagsForResource")?;
        for tag in page.tags() {
            tags.insert(tag.key().to_string(), tag.value().to_string());
        }
    }
    Ok(tags)
}
