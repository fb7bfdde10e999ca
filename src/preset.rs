//! `--sidecar` presets: the readiness check and the shutdown action of well-known sidecars, with their ports,
//! paths, methods and container names, so that users need not look them up. Pure table: no I/O.
//! The readiness check is used only in no-API mode (in a Pod, readiness comes from the Pod's status).

use std::fmt;

use crate::probe::Endpoint;
use crate::shutdown::{Action, Target};

/// What `--sidecar` accepts, for the usage error.
pub const EXPECTED: &str =
    "use istio, linkerd, cloudsql or envoy:PORT (the Envoy admin port; envoy:PORT=NAME names its container)";

/// A sidecar proa knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preset {
    /// Istio's istio-proxy (pilot-agent): readiness on 15021, `quitquitquit` on 15020.
    Istio,
    /// Linkerd's proxy: readiness and shutdown on its admin port 4191 (recent releases need the workload annotation
    /// `config.linkerd.io/proxy-admin-shutdown: enabled` for the shutdown endpoint).
    Linkerd,
    /// Cloud SQL Auth Proxy v2: readiness on 9090 (needs the proxy's `--health-check`), `quitquitquit` on 9091
    /// (needs `--quitquitquit`).
    CloudSql,
    /// Envoy itself: readiness and `quitquitquit` on its admin port, which differs between deployments, in a
    /// container of any name (none unless given).
    Envoy { admin_port: u16, container: Option<String> },
}

impl Preset {
    /// Parses `istio`, `linkerd`, `cloudsql`, `envoy:PORT` or `envoy:PORT=NAME`.
    pub fn parse(text: &str) -> Option<Preset> {
        match text {
            "istio" => Some(Preset::Istio),
            "linkerd" => Some(Preset::Linkerd),
            "cloudsql" => Some(Preset::CloudSql),
            _ => {
                let envoy = text.strip_prefix("envoy:")?;
                let (port, container) = match envoy.split_once('=') {
                    Some((port, name)) => (port, Some(name.to_string())),
                    None => (envoy, None),
                };
                let port: u16 = port.parse().ok().filter(|&p| p > 0)?;
                let name_ok =
                    container.as_deref().is_none_or(|name| Target::parse(&format!("{name}=http://x")).is_some());
                name_ok.then_some(Preset::Envoy { admin_port: port, container })
            }
        }
    }

    /// The readiness check: an HTTP GET that answers 2xx once the sidecar can serve.
    pub fn ready(&self) -> Endpoint {
        let (port, path) = self.table().0;
        Endpoint::Http(format!("http://127.0.0.1:{port}{path}"))
    }

    /// The shutdown action: a POST that makes the sidecar exit, naming the container it stops.
    pub fn quit(&self) -> Action {
        Action::Post(self.quit_on(self.table().1.0))
    }

    /// Where the shutdown POST goes when the sidecar serves it on `port` (its injector's annotation, its own flag).
    pub fn quit_on(&self, port: u16) -> Target {
        let path = self.table().1.1;
        Target { url: format!("http://127.0.0.1:{port}{path}"), container: self.container() }
    }

    /// The port the shutdown endpoint is served on by default.
    pub fn quit_port(&self) -> u16 {
        self.table().1.0
    }

    /// The container the sidecar runs in, as its injector names it.
    pub fn container(&self) -> Option<String> {
        match self {
            Preset::Istio => Some("istio-proxy".into()),
            Preset::Linkerd => Some("linkerd-proxy".into()),
            Preset::CloudSql => Some("cloud-sql-proxy".into()),
            Preset::Envoy { container, .. } => container.clone(),
        }
    }

    /// (readiness port and path, shutdown port and path); every shutdown is a POST.
    fn table(&self) -> ((u16, &'static str), (u16, &'static str)) {
        match *self {
            Preset::Istio => ((15021, "/healthz/ready"), (15020, "/quitquitquit")),
            Preset::Linkerd => ((4191, "/ready"), (4191, "/shutdown")),
            Preset::CloudSql => ((9090, "/readiness"), (9091, "/quitquitquit")),
            Preset::Envoy { admin_port, .. } => ((admin_port, "/ready"), (admin_port, "/quitquitquit")),
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Preset::Istio => write!(f, "istio"),
            Preset::Linkerd => write!(f, "linkerd"),
            Preset::CloudSql => write!(f, "cloudsql"),
            Preset::Envoy { admin_port, container: None } => write!(f, "envoy:{admin_port}"),
            Preset::Envoy { admin_port, container: Some(name) } => write!(f, "envoy:{admin_port}={name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(preset: Preset) -> (String, String, Option<String>) {
        let Endpoint::Http(ready) = preset.ready() else { panic!("readiness is HTTP") };
        let Action::Post(quit) = preset.quit() else { panic!("shutdown is a POST") };
        (ready, quit.url, quit.container)
    }

    #[test]
    fn istio() {
        let want = ("http://127.0.0.1:15021/healthz/ready".into(), "http://127.0.0.1:15020/quitquitquit".into());
        assert_eq!(urls(Preset::Istio), (want.0, want.1, Some("istio-proxy".into())));
    }

    #[test]
    fn linkerd() {
        let want = ("http://127.0.0.1:4191/ready".into(), "http://127.0.0.1:4191/shutdown".into());
        assert_eq!(urls(Preset::Linkerd), (want.0, want.1, Some("linkerd-proxy".into())));
    }

    #[test]
    fn cloudsql() {
        let want = ("http://127.0.0.1:9090/readiness".into(), "http://127.0.0.1:9091/quitquitquit".into());
        assert_eq!(urls(Preset::CloudSql), (want.0, want.1, Some("cloud-sql-proxy".into())));
    }

    #[test]
    fn envoy_uses_its_admin_port_and_names_its_container_only_when_told() {
        let want = ("http://127.0.0.1:9901/ready".to_string(), "http://127.0.0.1:9901/quitquitquit".to_string());
        assert_eq!(urls(Preset::Envoy { admin_port: 9901, container: None }), (want.0.clone(), want.1.clone(), None));
        let named = Preset::parse("envoy:9901=edge").unwrap();
        assert_eq!(urls(named), (want.0, want.1, Some("edge".into())));
    }

    #[test]
    fn parse_round_trips_display() {
        let envoys = [Preset::Envoy { admin_port: 15000, container: None }, Preset::parse("envoy:1=e").unwrap()];
        for preset in [Preset::Istio, Preset::Linkerd, Preset::CloudSql].into_iter().chain(envoys) {
            assert_eq!(Preset::parse(&preset.to_string()), Some(preset));
        }
    }

    #[test]
    fn parse_rejects_unknown_and_portless() {
        for bad in [
            "",
            "Istio",
            "envoy",
            "envoy:",
            "envoy:0",
            "envoy:65536",
            "envoy:x",
            "consul",
            " istio",
            "envoy:1=",
            "envoy:1=A",
        ] {
            assert_eq!(Preset::parse(bad), None, "{bad:?}");
        }
    }
}
