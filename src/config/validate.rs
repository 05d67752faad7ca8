//! The checks of a config read: each value in its range, the listener guarded, each watch and
//! account consistent. Not reading it, nor resolving its secrets (`mod.rs`).

use super::{invalid, Config, ConfigError, PartsInFlight, MIN_PARTS_IN_FLIGHT, SECRET_KEY_ENV};
use std::time::Duration;

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_service()?;
        self.validate_engine()?;
        self.validate_node()?;
        for (i, watch) in self.watch.iter().enumerate() {
            watch.validate(&format!("watch[{i}]"))?;
        }
        self.validate_accounts()
    }

    /// The endpoint and the top-level credentials.
    fn validate_service(&self) -> Result<(), ConfigError> {
        let url = url::Url::parse(&self.endpoint)
            .map_err(|e| invalid("endpoint", format!("`{}` is not a URL: {e}", self.endpoint)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("endpoint", "must be an http or https URL"));
        }
        if self.secret_id.trim().is_empty() {
            return Err(invalid("secret_id", "is required"));
        }
        match &self.secret_key {
            Some(key) if !key.is_empty() => {}
            _ => {
                return Err(invalid(
                    "secret_key",
                    format!("is required (or secret_key_file, or ${SECRET_KEY_ENV})"),
                ))
            }
        }
        if self.uid.trim().is_empty() {
            return Err(invalid("uid", "must not be empty"));
        }
        Ok(())
    }

    /// Part size, the windows, signatures, timeouts and retries.
    fn validate_engine(&self) -> Result<(), ConfigError> {
        if self.part_size().is_none() {
            return Err(invalid(
                "part_size",
                format!("{} is not 524288 or 1048576", self.part_size),
            ));
        }
        if let PartsInFlight::Fixed(n) = self.parts_in_flight {
            if n == 0 || n > 256 {
                return Err(invalid(
                    "parts_in_flight",
                    "must be \"auto\" or between 1 and 256",
                ));
            }
        }
        if !(MIN_PARTS_IN_FLIGHT..=256).contains(&self.max_parts_in_flight) {
            return Err(invalid("max_parts_in_flight", "must be between 2 and 256"));
        }
        if self.files_in_flight == 0 {
            return Err(invalid("files_in_flight", "must be at least 1"));
        }
        let validity = self.signature_validity.as_secs();
        if validity <= 600 || validity > crate::protocol::signature::MAX_VALIDITY_SECS {
            return Err(invalid(
                "signature_validity",
                "must be more than 10 minutes and at most 90 days",
            ));
        }
        for (key, duration) in [
            ("timeouts.connect", self.timeouts.connect),
            ("timeouts.request", self.timeouts.request),
            ("retry.base", self.retry.base),
            ("retry.slow_base", self.retry.slow_base),
            ("retry.cap", self.retry.cap),
        ] {
            // Zero would make every call time out at once, or retries spin without a pause.
            if duration.is_zero() {
                return Err(invalid(key, "must be more than zero"));
            }
        }
        Ok(())
    }

    /// The lease, the node's name, and the page's listener.
    fn validate_node(&self) -> Result<(), ConfigError> {
        if self.lease < Duration::from_secs(3) {
            // Renewed every third of it, by the second.
            return Err(invalid("lease", "must be at least 3s"));
        }
        if self.node.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(invalid("node", "must not be empty"));
        }
        if self.retry.max_attempts == 0 {
            return Err(invalid("retry.max_attempts", "must be at least 1"));
        }
        if let (Some(_), Some(_)) = (self.http.listen, self.metrics.listen) {
            return Err(invalid(
                "http.listen",
                "and metrics.listen are both set: they name the same listener; \
                 keep http.listen and remove metrics.listen",
            ));
        }
        if let Some(listen) = self.http_listen() {
            let guarded = self.http.public || self.http.token_file.is_some();
            if !listen.ip().is_loopback() && !guarded {
                return Err(invalid(
                    "http.listen",
                    format!(
                        "{listen} is not a loopback address, and the status page and metrics \
                         have no login unless http.token_file is set: set it, keep them on \
                         127.0.0.1 behind a reverse proxy that authenticates, or set \
                         http.public = true if the network in front of them is trusted"
                    ),
                ));
            }
        }
        Ok(())
    }
}
