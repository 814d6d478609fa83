//! The controller's notion of "now" for schedules: the system clock, or (tests only, behind a
//! hidden flag) a time read from a file that the test moves forward.

use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;

/// Where schedule decisions read the time.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The system clock.
    #[default]
    System,
    /// An RFC 3339 time read from this file at every look (end-to-end tests move it); the
    /// system clock while the file cannot be read.
    File(PathBuf),
}

impl Clock {
    /// The current time.
    pub fn now(&self) -> Timestamp {
        match self {
            Self::System => Timestamp::now(),
            Self::File(path) => std::fs::read_to_string(path)
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .unwrap_or_else(|| {
                    tracing::warn!(file = %path.display(), "the test clock's file holds no time: using the system clock");
                    Timestamp::now()
                }),
        }
    }

    /// How long to wait (on the real clock) before looking again for a time `until` away on
    /// this clock: that long on the system clock; at most half a second on a test clock,
    /// which moves by jumps.
    pub fn wait(&self, until: Duration) -> Duration {
        match self {
            Self::System => until,
            Self::File(_) => until.min(Duration::from_millis(500)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_clock_reads_its_file() {
        let dir = tempfile::tempdir().expect("a directory");
        let path = dir.path().join("now");
        std::fs::write(&path, "2030-01-01T00:00:00Z\n").expect("write");
        let clock = Clock::File(path.clone());
        assert_eq!(clock.now(), "2030-01-01T00:00:00Z".parse().expect("time"));
        std::fs::write(&path, "2030-01-01T00:05:00Z").expect("write");
        assert_eq!(clock.now(), "2030-01-01T00:05:00Z".parse().expect("time"));
        assert_eq!(
            clock.wait(Duration::from_secs(3600)),
            Duration::from_millis(500)
        );
        assert_eq!(
            Clock::System.wait(Duration::from_secs(3600)),
            Duration::from_secs(3600)
        );
    }
}
