//! The load generator's HTTP side: a connection pool, a streaming request driver that
//! timestamps bytes as they arrive, the response head parser and body framing, the SSE
//! decoder and the chunk classifier.

mod body;
pub mod chunk;
pub mod get;
pub mod head;
pub mod pool;
pub mod request;
pub mod sse;
pub mod url;

pub use pool::Pool;
pub use request::{Job, Presend, RequestSpec, Timeouts, execute};
pub use url::BaseUrl;

#[cfg(test)]
mod tests;
