//! Managing what the vault serves through its API, in the Authress shapes: connections (here). The
//! provider protocol itself (`oauth/`) touches no storage; roles and records are managed in
//! `access/admin.rs`, service clients in `identity/service_clients.rs`.

pub mod connections;
