//! Ages and durations as kubectl columns show them (`translateTimestampSince`,
//! `duration.HumanDuration`), for the CRD tables and the built-in printers.

/// `translateTimestampSince`: the age of a time, `<unknown>` when there is none.
pub fn since(time: Option<jiff::Timestamp>) -> String {
    match time {
        Some(time) => human_duration(jiff::Timestamp::now().duration_since(time).as_secs()),
        None => "<unknown>".to_owned(),
    }
}

/// kube-apiserver's `duration.HumanDuration`: `10s`, `2m5s`, `45m`, `3h20m`, `2d4h`, `400d`.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    // "2m5s", or "2m" when the smaller unit is zero.
    let both = |major: i64, major_unit: &str, minor: i64, minor_unit: &str| {
        if minor == 0 {
            format!("{major}{major_unit}")
        } else {
            format!("{major}{major_unit}{minor}{minor_unit}")
        }
    };
    let minutes = seconds / 60;
    if minutes < 10 {
        return both(minutes, "m", seconds % 60, "s");
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return both(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return both(hours / 24, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return both(hours / 24 / 365, "y", (hours / 24) % 365, "d");
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_as_kubectl_prints_them() {
        for (seconds, text) in [
            (10, "10s"),
            (119, "119s"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600 + 20 * 60, "3h20m"),
            (30 * 3600, "30h"),
            (50 * 3600, "2d2h"),
            (400 * 86400, "400d"),
        ] {
            assert_eq!(human_duration(seconds), text);
        }
    }
}
