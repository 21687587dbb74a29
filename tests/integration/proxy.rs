//! An HTTP proxy of the test suite in front of an emulator: it forwards each request
//! unchanged and relays the answer, except the requests a rule picks, which it answers
//! itself. This is how the tests show what no emulator does: a role that cannot be
//! assumed (moto's AssumeRole accepts any role). One request per connection: the proxy
//! answers with `Connection: close`, so the SDK reconnects for the next.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// A request as the proxy sees it.
pub(crate) struct Request {
    pub(crate) head: String,
    pub(crate) body: Vec<u8>,
}

impl Request {
    /// The body as text (query-protocol calls are form-encoded).
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What the proxy does with a request.
pub(crate) enum Answer {
    /// Send it on.
    Forward,
    /// Answer it with this status and body (XML, as the query protocol answers).
    Respond(u16, String),
    /// Send it on after this long: the network latency of a call to AWS (what
    /// `make bench` adds; benches/throughput.rs includes this file).
    #[allow(dead_code)]
    Delay(Duration),
    /// Send it on, let the emulator act on it, and close the connection without
    /// relaying the answer: a change made whose answer was lost on the way back.
    #[allow(dead_code)]
    Lost,
    /// Close the connection without sending it on: a request lost on the way out.
    #[allow(dead_code)]
    Drop,
}

type Rule = dyn Fn(&Request) -> Answer + Send + Sync;

/// A running proxy; stops accepting when dropped.
pub(crate) struct Proxy {
    pub(crate) endpoint: String,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
}

impl Proxy {
    /// Starts a proxy in front of `upstream` (`http://127.0.0.1:PORT`).
    pub(crate) fn start(
        upstream: &str,
        rule: impl Fn(&Request) -> Answer + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy port");
        let port = listener.local_addr().expect("address").port();
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let rule: Arc<Rule> = Arc::new(rule);
        {
            let stop = Arc::clone(&stop);
            let answered = Arc::clone(&answered);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (rule, upstream, answered) =
                        (Arc::clone(&rule), upstream.clone(), Arc::clone(&answered));
                    std::thread::spawn(move || {
                        let _ = serve(stream, &upstream, rule.as_ref(), &answered);
                    });
                }
            });
        }
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            stop,
            answered,
        }
    }

    /// A proxy that answers `RequestLimitExceeded` (HTTP 503, as EC2 does) to every EC2
    /// call over `buckets`, and sends the rest on.
    pub(crate) fn throttling(upstream: &str, buckets: Arc<Buckets>) -> Self {
        Self::start(upstream, move |request| {
            if buckets.over(request) {
                Answer::Respond(
                    503,
                    "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>proxy</RequestID></Response>".to_string(),
                )
            } else {
                Answer::Forward
            }
        })
    }

    /// How many requests the rule answered itself.
    pub(crate) fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.endpoint.trim_start_matches("http://"));
    }
}

/// Reads one request (head and a Content-Length or chunked body).
fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<Request> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let end = line == "\r\n";
        head.push_str(&line);
        if end {
            break;
        }
    }
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (key, value) = l.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    };
    let mut body = Vec::new();
    if let Some(length) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
        // Sent on with a length instead.
        head = head
            .lines()
            .filter(|l| !l.to_ascii_lowercase().starts_with("transfer-encoding"))
            .filter(|l| !l.is_empty())
            .map(|l| format!("{l}\r\n"))
            .collect::<String>()
            + &format!("Content-Length: {}\r\n\r\n", body.len());
    }
    Ok(Request { head, body })
}

fn serve(
    client: TcpStream,
    upstream: &str,
    rule: &Rule,
    answered: &AtomicUsize,
) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let request = read_request(&mut reader)?;
    let mut client = client;
    match rule(&request) {
        Answer::Respond(status, body) => {
            answered.fetch_add(1, Ordering::SeqCst);
            let reason = if status < 400 { "OK" } else { "Error" };
            write!(
                client,
                "HTTP/1.1 {status} {reason}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nx-amzn-requestid: proxy-{status}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
        }
        Answer::Delay(latency) => {
            std::thread::sleep(latency);
            forward(&mut client, upstream, &request)?;
        }
        Answer::Forward => forward(&mut client, upstream, &request)?,
        Answer::Lost => {
            answered.fetch_add(1, Ordering::SeqCst);
            forward(&mut Vec::new(), upstream, &request)?;
            return client.shutdown(std::net::Shutdown::Both);
        }
        Answer::Drop => {
            answered.fetch_add(1, Ordering::SeqCst);
            return client.shutdown(std::net::Shutdown::Both);
        }
    }
    client.flush()
}

/// Sends a request to the emulator and relays its answer.
fn forward(client: &mut impl Write, upstream: &str, request: &Request) -> std::io::Result<()> {
    let mut server = TcpStream::connect(upstream)?;
    // One request per upstream connection, answered until it closes.
    let head: String = request
        .head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .filter(|l| !l.is_empty())
        .map(|l| format!("{l}\r\n"))
        .collect::<String>()
        + "Connection: close\r\n\r\n";
    server.write_all(head.as_bytes())?;
    server.write_all(&request.body)?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer)?;
    client.write_all(&answer)
}

/// The query-protocol error document AWS answers a refused call with.
pub(crate) fn error_xml(code: &str, message: &str) -> String {
    format!(
        "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>proxy</RequestId></ErrorResponse>"
    )
}

/// EC2's request-token buckets as the proxy enforces them: one bucket per action,
/// describes (`Describe*`, `Get*`) of one size and every other EC2 action of another;
/// a request over the limit is answered `RequestLimitExceeded` (HTTP 503), as EC2 does.
pub(crate) struct Buckets {
    /// (burst, per second) of describes.
    describe: (f64, f64),
    /// (burst, per second) of the other actions.
    mutating: (f64, f64),
    state: std::sync::Mutex<std::collections::HashMap<String, (f64, std::time::Instant)>>,
}

impl Buckets {
    /// Buckets of `describe` and `mutating` (burst, per second).
    pub(crate) fn new(describe: (f64, f64), mutating: (f64, f64)) -> Self {
        Self {
            describe,
            mutating,
            state: std::sync::Mutex::default(),
        }
    }

    /// Whether the request must be refused: it is an EC2 call and its bucket is empty.
    pub(crate) fn over(&self, request: &Request) -> bool {
        let body = request.text();
        let Some(action) = body.split('&').find_map(|p| p.strip_prefix("Action=")) else {
            return false;
        };
        if !body.contains("Version=2016-11-15") {
            return false; // not EC2
        }
        let (burst, rate) = if action.starts_with("Describe") || action.starts_with("Get") {
            self.describe
        } else {
            self.mutating
        };
        let now = std::time::Instant::now();
        let mut state = self.state.lock().expect("buckets");
        let (tokens, at) = state.entry(action.to_string()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            false
        } else {
            true
        }
    }
}
