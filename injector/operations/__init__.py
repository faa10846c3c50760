"""Operations: the command line (`cli`, its `commands` and shared `flags`), the wiring that
builds the served parts from settings (`wiring`), the TLS bootstrap and CA rotation (`certs`,
`authority`, `certs_bootstrap`, `cert_expiry`) and the offline preview (`render`, `reviews`).
Errors: `errors`."""
