//! The load generator's HTTP side: how a server is reached (`server`: URL, TLS, headers;
//! `conn`: a plain or TLS connection), a connection pool, a streaming request driver that
//! timestamps bytes as they arrive, the response head parser and body framing, the SSE
//! decoder and the chunk classifier.

mod body;
pub mod chunk;
pub mod conn;
pub mod get;
pub mod head;
pub mod headers;
pub mod pool;
pub mod request;
pub mod server;
pub mod sse;
pub mod tls;
pub mod url;

pub use pool::Pool;
pub use request::{Job, Presend, RequestSpec, Timeouts, execute};
pub use server::{Access, Server};
pub use url::BaseUrl;

#[cfg(test)]
mod tests;
