use super::*;

const ROOT: &str = "/data";

#[test]
fn parse_sender_accepts_what_the_data_path_client_sends() {
    let cases = [
        "rsync --server --sender -lHogDtpAXrSe.iLsfxCIvu --numeric-ids . /data/",
        "rsync --server --sender -lHogDtpAXrcSe.iLsfxCIvu --bwlimit=1000 --numeric-ids . /data/",
        "rsync --server --sender -lHogDtpAXrxSze.LsfxCIvu --timeout=30 --ignore-errors --numeric-ids --inplace . /data/",
        "rsync --server --sender -vvnlHogDtpAXrSe.iLsfxCIvu --numeric-ids . /data",
    ];
    for command in cases {
        let parsed = parse_sender(command, ROOT).unwrap_or_else(|e| panic!("{command}: {e}"));
        assert_eq!(parsed.args.first().map(String::as_str), Some("--server"), "{command}");
        assert_eq!(parsed.args.last().map(String::as_str), Some("/data/"), "{command}");
    }
}

#[test]
fn parse_sender_refuses_when_the_command_is_anything_else() {
    let cases: &[(&str, &str)] = &[
        ("sh -c id", "NotRsyncSender"),
        ("rsync --server -lHogDtpAXrSe.iLsfxCIvu . /data/", "NotRsyncSender"),
        ("rsync --daemon", "NotRsyncSender"),
        ("/usr/bin/rsync --server --sender -r . /data/", "NotRsyncSender"),
        ("rsync --server --sender -r /data/", "NotRsyncSender"),
        ("rsync --server --sender -r .", "NotRsyncSender"),
        ("rsync --server --sender -rL . /data/", "OptionNotAllowed"),
        ("rsync --server --sender -rk . /data/", "OptionNotAllowed"),
        ("rsync --server --sender -slHogDtpAXrSe.iLsfxCIvu", "NotRsyncSender"),
        ("rsync --server --sender -se.iLsfxCIvu . /data/", "OptionNotAllowed"),
        ("rsync --server --sender -re.i-x . /data/", "OptionNotAllowed"),
        ("rsync --server --sender --rsync-path=/bin/sh . /data/", "OptionNotAllowed"),
        ("rsync --server --sender --copy-links . /data/", "OptionNotAllowed"),
        ("rsync --server --sender --remove-source-files . /data/", "OptionNotAllowed"),
        ("rsync --server --sender --bwlimit=1m;id . /data/", "Quoting"),
        ("rsync --server --sender --timeout= . /data/", "OptionNotAllowed"),
        ("rsync --server --sender -r . /etc/", "PathOutsideVolume"),
        ("rsync --server --sender -r . /data/../etc", "PathOutsideVolume"),
        ("rsync --server --sender -r . /data/sub", "PathOutsideVolume"),
        ("rsync --server --sender -r . /data/ /etc/", "PathOutsideVolume"),
        ("rsync --server --sender -r . -/data/", "PathOutsideVolume"),
        ("rsync --server --sender -r . /data/\\ x", "Quoting"),
        ("rsync --server --sender -r . '/data/'", "Quoting"),
        ("rsync --server --sender -r . /data/\n", "Quoting"),
        ("rsync --server --sender -r . $HOME", "Quoting"),
    ];
    for (command, reason) in cases {
        let refusal = parse_sender(command, ROOT).expect_err(command);
        assert_eq!(refusal.reason(), *reason, "{command}: {refusal}");
    }
}

#[test]
fn parse_sender_runs_the_rebuilt_arguments_when_the_path_has_no_trailing_slash() {
    let parsed = parse_sender("rsync --server --sender -r --numeric-ids . /data", ROOT).unwrap();
    assert_eq!(parsed.args, ["--server", "--sender", "-r", "--numeric-ids", "--confine-root=/data", ".", "/data/"]);
}

#[test]
fn check_client_option_accepts_only_the_allow_list() {
    for ok in ["--compress", "--inplace", "--timeout=600", "--max-size=2G", "--checksum-choice=xxh128"] {
        assert_eq!(check_client_option(ok), Ok(()), "{ok}");
    }
    for refused in [
        "--rsh=sh",
        "--rsync-path=/bin/sh",
        "--remove-source-files",
        "--copy-links",
        "-L",
        "--timeout",
        "--timeout=1h",
        "--max-size=1;id",
        "--delete-excluded",
        "--files-from=/etc/passwd",
    ] {
        assert!(check_client_option(refused).is_err(), "{refused}");
    }
}
