//! TLS for every HTTPS client of the process (the operator client, the Pushgateway, the
//! object stores): rustls with the ring provider, installed once as the process default.

/// Installs ring as the process's rustls provider, once; later calls do nothing.
pub fn install_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Fails only if another provider was installed first, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
