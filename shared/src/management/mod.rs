//! Managing what the vault serves through its API, in the Authress shapes: connections, service clients
//! and their access keys, roles and access records, and the first administrator. Edge-adjacent: these
//! answer with the API's errors. The provider protocol (`oauth/`) touches no storage, and the access
//! model and its checks (`access/`) change nothing.

pub mod access;
pub mod authority;
pub mod bootstrap;
pub mod connection_body;
pub mod connections;
pub mod presets;
pub mod service_clients;
