//! `--sidecar` presets: the readiness check and the shutdown action of well-known sidecars, with their ports,
//! paths and methods, so that users need not look them up. Pure table: no I/O.
//! The readiness check is used only in no-API mode (in a Pod, readiness comes from the Pod's status).

use std::fmt;

use crate::probe::Endpoint;
use crate::shutdown::Action;

/// What `--sidecar` accepts, for the usage error.
pub const EXPECTED: &str = "use istio, linkerd, cloudsql or envoy:PORT (the Envoy admin port)";

/// A sidecar proa knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Istio's istio-proxy (pilot-agent): readiness on 15021, `quitquitquit` on 15020.
    Istio,
    /// Linkerd's proxy: readiness and shutdown on its admin port 4191 (recent releases need the workload annotation
    /// `config.linkerd.io/proxy-admin-shutdown: enabled` for the shutdown endpoint).
    Linkerd,
    /// Cloud SQL Auth Proxy v2: readiness on 9090 (needs the proxy's `--health-check`), `quitquitquit` on 9091
    /// (needs `--quitquitquit`).
    CloudSql,
    /// Envoy itself: readiness and `quitquitquit` on its admin port, which differs between deployments.
    Envoy { admin_port: u16 },
}

impl Preset {
    /// Parses `istio`, `linkerd`, `cloudsql` or `envoy:PORT`.
    pub fn parse(text: &str) -> Option<Preset> {
        match text {
            "istio" => Some(Preset::Istio),
            "linkerd" => Some(Preset::Linkerd),
            "cloudsql" => Some(Preset::CloudSql),
            _ => {
                let port: u16 = text.strip_prefix("envoy:")?.parse().ok()?;
                (port > 0).then_some(Preset::Envoy { admin_port: port })
            }
        }
    }

    /// The readiness check: an HTTP GET that answers 2xx once the sidecar can serve.
    pub fn ready(&self) -> Endpoint {
        let (port, path) = self.table().0;
        Endpoint::Http(format!("http://127.0.0.1:{port}{path}"))
    }

    /// The shutdown action: a POST that makes the sidecar exit.
    pub fn quit(&self) -> Action {
        let (port, path) = self.table().1;
        Action::Post(format!("http://127.0.0.1:{port}{path}"))
    }

    /// (readiness port and path, shutdown port and path); every shutdown is a POST.
    fn table(&self) -> ((u16, &'static str), (u16, &'static str)) {
        match *self {
            Preset::Istio => ((15021, "/healthz/ready"), (15020, "/quitquitquit")),
            Preset::Linkerd => ((4191, "/ready"), (4191, "/shutdown")),
            Preset::CloudSql => ((9090, "/readiness"), (9091, "/quitquitquit")),
            Preset::Envoy { admin_port } => ((admin_port, "/ready"), (admin_port, "/quitquitquit")),
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Preset::Istio => write!(f, "istio"),
            Preset::Linkerd => write!(f, "linkerd"),
            Preset::CloudSql => write!(f, "cloudsql"),
            Preset::Envoy { admin_port } => write!(f, "envoy:{admin_port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(preset: Preset) -> (String, String) {
        let Endpoint::Http(ready) = preset.ready() else { panic!("readiness is HTTP") };
        let Action::Post(quit) = preset.quit() else { panic!("shutdown is a POST") };
        (ready, quit)
    }

    #[test]
    fn istio() {
        let want = ("http://127.0.0.1:15021/healthz/ready".into(), "http://127.0.0.1:15020/quitquitquit".into());
        assert_eq!(urls(Preset::Istio), want);
    }

    #[test]
    fn linkerd() {
        let want = ("http://127.0.0.1:4191/ready".into(), "http://127.0.0.1:4191/shutdown".into());
        assert_eq!(urls(Preset::Linkerd), want);
    }

    #[test]
    fn cloudsql() {
        let want = ("http://127.0.0.1:9090/readiness".into(), "http://127.0.0.1:9091/quitquitquit".into());
        assert_eq!(urls(Preset::CloudSql), want);
    }

    #[test]
    fn envoy_uses_its_admin_port() {
        let want = ("http://127.0.0.1:9901/ready".into(), "http://127.0.0.1:9901/quitquitquit".into());
        assert_eq!(urls(Preset::Envoy { admin_port: 9901 }), want);
    }

    #[test]
    fn parse_round_trips_display() {
        for preset in [Preset::Istio, Preset::Linkerd, Preset::CloudSql, Preset::Envoy { admin_port: 15000 }] {
            assert_eq!(Preset::parse(&preset.to_string()), Some(preset));
        }
    }

    #[test]
    fn parse_rejects_unknown_and_portless() {
        for bad in ["", "Istio", "envoy", "envoy:", "envoy:0", "envoy:65536", "envoy:x", "consul", " istio"] {
            assert_eq!(Preset::parse(bad), None, "{bad:?}");
        }
    }
}
