//! What `--http` and the flags of its transport ask for. The token and TLS files are read and
//! checked here, before the job starts, so a mistake in them exits 2 naming its flag instead of
//! failing requests later.

use std::sync::Arc;

use super::auth::BearerToken;
use super::in_flight::DEFAULT_MAX_IN_FLIGHT;
use super::tls;
use crate::cli::RunArgs;
use crate::error::UsageError;

/// `--http` and the flags of its transport, their files read and checked.
pub struct HttpConfig {
    pub(super) addr: String,
    pub(super) token: Option<Arc<BearerToken>>,
    pub(super) tls: Option<Arc<rustls::ServerConfig>>,
    pub(super) max_in_flight: usize,
}

impl HttpConfig {
    /// The configuration of `run`'s API; `None` without `--http`.
    pub fn from_args(args: &RunArgs) -> Result<Option<HttpConfig>, UsageError> {
        let Some(addr) = &args.http else { return Ok(None) };
        let max_in_flight = args.http_max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT);
        if max_in_flight == 0 {
            return Err(UsageError("--http-max-in-flight: must be at least 1".into()));
        }
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
            (None, None) => None,
            _ => return Err(UsageError("--tls-cert and --tls-key: give both or neither".into())),
        };
        Ok(Some(HttpConfig {
            addr: addr.clone(),
            token: args.http_token_file.as_deref().map(BearerToken::load).transpose()?.map(Arc::new),
            tls,
            max_in_flight,
        }))
    }

    pub(super) fn scheme(&self) -> &'static str {
        match self.tls {
            Some(_) => "https",
            None => "http",
        }
    }
}
