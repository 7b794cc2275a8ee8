//! Mock upstream for local development, tests and benchmarks: speaks the OpenAI, Anthropic,
//! Gemini and Perplexity wire formats deterministically, with fault injection by prompt markers
//! and a call log for tests. Loopback only. Streamed requests get each provider's stream
//! (`stream`), with the same text and counts as the JSON answer.
//!
//! Provider base URLs (for `http://127.0.0.1:PORT`):
//! `…/openai/v1`, `…/anthropic`, `…/gemini`, `…/perplexity`. Control routes:
//! `GET /__mock/calls?contains=…`, `GET /__mock/last?contains=…`, `POST /__mock/reset`,
//! `GET /__mock/health`.

pub mod markers;
pub mod server;
pub mod stream;
pub mod wire;

pub use server::{router, serve, MockState};

/// What the command line asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Serve on this loopback port (0: any free port).
    Run {
        port: u16,
    },
    Help,
}

pub const USAGE: &str = "usage: mock-provider [--port N]   (N = 0 or absent: pick a free port)

Faults are markers in the prompt: [[mock:<openai|anthropic|gemini|perplexity|*>=<fault>]]
  delay:<ms> 500 503 529 429 401 malformed drop echo_key html401
  dated_model long:<chars> empty input_tokens:<n>
Streams (\"stream\": true; Gemini :streamGenerateContent, ?alt=sse for SSE):
  stream_delay:<ms>        wait before each event after the first
  first_event_delay:<ms>   headers at once, the first event that much later
  stream_error             a few content events, then the provider's error event
  stream_truncate          a few content events, then the connection closes mid-body
  stream_hang              a few content events, then silence (closed after 10 minutes)
  A status fault (429, 503, ...) answers its JSON error before any stream.";

/// Parses the arguments after the program name: `--port N`, `--port=N`, `-h`, `--help`.
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut port = 0u16;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--port" => args.next().ok_or("--port needs a value")?,
            other => match other.strip_prefix("--port=") {
                Some(v) => v.to_owned(),
                None => return Err(format!("unknown argument: {other}")),
            },
        };
        port = value
            .parse()
            .map_err(|_| format!("--port: not a port number: {value}"))?;
    }
    Ok(Command::Run { port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Command, String> {
        parse_args(a.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_port_forms() {
        assert_eq!(args(&["--port", "8791"]), Ok(Command::Run { port: 8791 }));
        assert_eq!(args(&["--port=0"]), Ok(Command::Run { port: 0 }));
        assert_eq!(args(&[]), Ok(Command::Run { port: 0 }));
        assert_eq!(args(&["--help"]), Ok(Command::Help));
    }

    #[test]
    fn rejects_bad_arguments() {
        assert!(args(&["--port"]).is_err());
        assert!(args(&["--port", "70000"]).is_err());
        assert!(args(&["--port", "-1"]).is_err());
        assert!(args(&["--host", "0.0.0.0"]).is_err());
    }
}
