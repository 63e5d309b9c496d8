//! A real Caddy for the tests: a directory it can read, and a running
//! instance (as the `caddy` user, on free high ports, with its internal CA)
//! serving one rendered snippet for `acme.localhost`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A temporary directory the `caddy` user can enter.
pub fn caddy_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// One answer of Caddy: status (0: no answer), header fields and body.
pub struct Answer {
    pub status: u16,
    /// Names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The value of the first field named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A running Caddy, stopped when dropped.
pub struct RunningCaddy {
    child: std::process::Child,
    https_port: u16,
    log: PathBuf,
}

impl RunningCaddy {
    /// Serves `snippet` in `dir` (which the `caddy` user can read).
    pub fn start(dir: &Path, snippet: &str) -> RunningCaddy {
        use std::os::unix::process::CommandExt;
        let caddy = nix::unistd::User::from_name("caddy").unwrap().unwrap();
        let free_port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let (http_port, https_port) = (free_port(), free_port());
        for d in ["data", "config"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
            std::os::unix::fs::chown(dir.join(d), Some(caddy.uid.as_raw()), None).unwrap();
        }
        std::fs::write(dir.join("site.caddy"), snippet).unwrap();
        let rootfile = dir.join("Caddyfile");
        std::fs::write(
            &rootfile,
            format!(
                "{{\n\tadmin off\n\thttp_port {http_port}\n\thttps_port {https_port}\n\
                 \tlocal_certs\n\tskip_install_trust\n}}\nimport {}\n",
                dir.join("site.caddy").display()
            ),
        )
        .unwrap();
        let log = dir.join("caddy.log");
        let child = Command::new("caddy")
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&rootfile)
            .current_dir(dir)
            .env("HOME", dir)
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::options().append(true).open(&log).unwrap())
            .uid(caddy.uid.as_raw())
            .gid(caddy.gid.as_raw())
            .spawn()
            .unwrap();
        let caddy = RunningCaddy {
            child,
            https_port,
            log,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while caddy.get("/static/").0 == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "caddy did not answer:\n{}",
                std::fs::read_to_string(&caddy.log).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        caddy
    }

    fn curl(&self) -> Command {
        let port = self.https_port;
        let mut curl = Command::new("curl");
        curl.args(["-sk", "--max-time", "5", "--resolve"])
            .arg(format!("acme.localhost:{port}:127.0.0.1"));
        curl
    }

    fn url(&self, path: &str) -> String {
        format!("https://acme.localhost:{}{path}", self.https_port)
    }

    /// (status, body) of `https://acme.localhost<path>`; status 0: no answer.
    pub fn get(&self, path: &str) -> (u16, String) {
        let a = self.request(path, &[]);
        (a.status, String::from_utf8_lossy(&a.body).into_owned())
    }

    /// `https://acme.localhost<path>` with more curl arguments (`-H …`).
    pub fn request(&self, path: &str, args: &[&str]) -> Answer {
        let out = self
            .curl()
            .arg("-i")
            .args(args)
            .arg(self.url(path))
            .output()
            .unwrap();
        let raw = out.stdout;
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n");
        let (head, body) = match split {
            Some(i) => (&raw[..i], raw[i + 4..].to_vec()),
            None => (&raw[..], Vec::new()),
        };
        let head = String::from_utf8_lossy(head);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// For each path, in one connection: the status and the value of the
    /// header field `name` ("" when absent).
    pub fn status_and_header(&self, paths: &[String], name: &str) -> Vec<(u16, String)> {
        let mut curl = self.curl();
        curl.arg("-w")
            .arg(format!("%{{http_code}} %header{{{name}}}\\n"));
        for p in paths {
            curl.args(["-o", "/dev/null"]).arg(self.url(p));
        }
        let out = curl.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let answers: Vec<(u16, String)> = text
            .lines()
            .map(|l| {
                let (code, value) = l.split_once(' ').unwrap_or((l, ""));
                (code.parse().unwrap_or(0), value.to_string())
            })
            .collect();
        assert_eq!(answers.len(), paths.len(), "curl printed:\n{text}");
        answers
    }
}

impl Drop for RunningCaddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
