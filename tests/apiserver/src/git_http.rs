//! A real Git server for tests: `git http-backend` (Git's own smart-HTTP CGI) behind a small
//! HTTP/1.1 server with basic auth. Fetch and push (`http.receivepack` is turned on in each
//! repository it serves by the tests that push).

/// Serves the repositories under `root` on a loopback port (returned), to clients with basic
/// auth `x-access-token:<token>`; anyone else gets a 401.
pub fn serve(root: &std::path::Path, token: &'static str) -> u16 {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    let root = root.to_owned();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let root = root.clone();
            std::thread::spawn(move || {
                let Some(crate::http1::Request {
                    method,
                    target,
                    headers,
                    body,
                }) = crate::http1::read(&stream)
                else {
                    return;
                };
                let mut stream = stream;
                let expected = format!(
                    "Basic {}",
                    base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD,
                        format!("x-access-token:{token}")
                    )
                );
                if headers.get("authorization") != Some(&expected) {
                    let _ = stream.write_all(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    return;
                }
                let (path, query) = target.split_once('?').unwrap_or((&target, ""));
                let mut cgi = std::process::Command::new("git")
                    .arg("http-backend")
                    .env("GIT_PROJECT_ROOT", &root)
                    .env("GIT_HTTP_EXPORT_ALL", "1")
                    .env("REQUEST_METHOD", &method)
                    .env("PATH_INFO", path)
                    .env("QUERY_STRING", query)
                    .env("REMOTE_USER", "x-access-token")
                    .env(
                        "CONTENT_TYPE",
                        headers.get("content-type").cloned().unwrap_or_default(),
                    )
                    .env("CONTENT_LENGTH", body.len().to_string())
                    .env(
                        "GIT_PROTOCOL",
                        headers.get("git-protocol").cloned().unwrap_or_default(),
                    )
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap_or_else(|e| panic!("{e}"));
                cgi.stdin
                    .take()
                    .unwrap_or_else(|| panic!("stdin"))
                    .write_all(&body)
                    .unwrap_or_else(|e| panic!("{e}"));
                let output = cgi
                    .wait_with_output()
                    .unwrap_or_else(|e| panic!("{e}"))
                    .stdout;
                let split = output
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map(|i| (i, 4))
                    .or_else(|| output.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)))
                    .unwrap_or_else(|| panic!("no CGI header in {output:?}"));
                let head = String::from_utf8_lossy(&output[..split.0]).into_owned();
                let content = &output[split.0 + split.1..];
                let status = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Status: "))
                    .unwrap_or("200 OK")
                    .to_owned();
                let mut response = format!("HTTP/1.1 {status}\r\n");
                for l in head.lines().filter(|l| !l.starts_with("Status: ")) {
                    response.push_str(l.trim_end());
                    response.push_str("\r\n");
                }
                response.push_str(&format!(
                    "Content-Length: {}\r\nConnection: close\r\n\r\n",
                    content.len()
                ));
                let _ = stream.write_all(response.as_bytes());
                let _ = stream.write_all(content);
            });
        }
    });
    port
}

/// Runs `git args` in `dir` with no system or user config (an author and committer set), and
/// returns its output; a failure panics with git's message.
pub fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let output = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env("GIT_AUTHOR_NAME", "dev")
        .env("GIT_AUTHOR_EMAIL", "dev@example.com")
        .env("GIT_COMMITTER_NAME", "dev")
        .env("GIT_COMMITTER_EMAIL", "dev@example.com")
        .output()
        .unwrap_or_else(|e| panic!("git {args:?}: {e}"));
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}
