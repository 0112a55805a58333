//! The security migration, run once by an operator after upgrading (`migrate-security`). Items stored
//! before the access-control rules existed get what the rules rely on:
//!
//! - every connection gets a generation (so a later delete and re-create is told apart);
//! - every credential is pinned to the endpoints of its connection as it is now, and its user id is
//!   claimed for that connection (the first login's ownership, after the fact);
//! - the policy counters are recounted from the roles and active records;
//!
//! and what cannot be fixed without a person is reported: service clients whose ids lack the `sc_`
//! prefix (make a new client and move its grants), and user ids with credentials under several
//! connections (link them with `link-identity`, or disconnect the ones that are not theirs).
//! Running it again changes nothing that is already migrated.

use serde::Serialize;

use crate::clock::Clock;
use crate::crypto::Envelope;
use crate::ids::CLIENT_ID_PREFIX;
use crate::oauth::connection::IssuedUnder;
use crate::store::{StoreError, Table, connections, credentials, documents, identities};

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationReport {
    pub connections_given_a_generation: u32,
    pub credentials_pinned: u32,
    /// Credentials whose connection is gone: they stay unpinned and answer 409 until deleted.
    pub credentials_without_connection: u32,
    pub identities_claimed: u32,
    /// `userId` -> the connection that could not claim it because another one already had.
    pub identity_conflicts: Vec<(String, String)>,
    pub clients_without_prefix: Vec<String>,
    pub roles: i64,
    pub active_records: i64,
    pub policy_bytes: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Connection(#[from] connections::ConnectionStoreError),
}

/// Migrates the vault in `table`; `envelope` opens the connections it reads, `clock` dates the claims.
pub async fn migrate(table: &Table, envelope: &Envelope, clock: &dyn Clock) -> Result<MigrationReport, MigrationError> {
    let mut report = MigrationReport::default();

    let mut cursor = None;
    loop {
        let (page, next) = connections::list(table, envelope, 100, cursor.as_deref()).await?;
        for connection in page {
            if connection.generation.is_empty()
                && connections::assign_generation(table, &connection.connection_id, &crate::random::token(12)).await?
            {
                report.connections_given_a_generation += 1;
            }
        }
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }

    // Oldest first, so the connection a user id really started at claims it.
    let mut items = credentials::scan_all(table).await?;
    items.sort_by_key(|(created_at, _)| *created_at);
    let now = clock.now_secs();
    for (_, item) in items {
        let Some(connection) = connections::get(table, envelope, &item.connection_id).await? else {
            report.credentials_without_connection += u32::from(item.issued_under.is_none());
            continue;
        };
        if item.issued_under.is_none() && credentials::pin(table, &item, &IssuedUnder::of(&connection)).await? {
            report.credentials_pinned += 1;
        }
        let generation = &connection.generation;
        if identities::belongs_to(table, &item.user_id, &item.connection_id, generation).await? {
            continue;
        }
        if identities::claim_for_login(table, &item.user_id, &item.connection_id, generation, now).await? {
            report.identities_claimed += 1;
        } else {
            report
                .identity_conflicts
                .push((item.user_id.clone(), item.connection_id.clone()));
        }
    }

    let (mut roles, mut records, mut bytes) = (0, 0, 0);
    for (kind, count) in [
        (documents::Kind::Role, &mut roles),
        (documents::Kind::Record, &mut records),
    ] {
        let live = documents::list_all(table, kind).await?;
        *count = live.len() as i64;
        bytes += live.iter().map(documents::Document::counted_bytes).sum::<i64>();
    }
    let stored = crate::store::policy::stats(table).await?;
    if (stored.roles, stored.records, stored.bytes) != (roles, records, bytes) {
        crate::store::policy::set_counts(table, roles, records, bytes).await?;
    }
    (report.roles, report.active_records, report.policy_bytes) = (roles, records, bytes);

    let mut cursor = None;
    loop {
        let (page, next) = documents::list(table, documents::Kind::Client, 100, cursor.as_deref()).await?;
        report.clients_without_prefix.extend(
            page.into_iter()
                .map(|d| d.id)
                .filter(|id| !id.starts_with(CLIENT_ID_PREFIX)),
        );
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok(report)
}
