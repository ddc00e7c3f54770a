//! The sandbox, through `pkgcell run`, on the real kernel, as a plain user:
//! what must work, and the escape probes: what must fail.

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

// ------------------------------------------------------------ basic behaviour

#[test]
fn the_payloads_exit_code_is_passed_through() {
    let o = run_sh(&[], "exit 7");
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
}

#[test]
fn death_by_signal_is_reported_as_128_plus_n() {
    let o = run_sh(&[], "kill -TERM $$");
    assert_eq!(o.status.code(), Some(143), "{}", text(&o));
}

#[test]
fn json_outcome_has_version_status_times_and_memory() {
    let o = run_sh(&["--json"], "echo to-stderr; head -c 20000000 /dev/zero | tail -c 1 >/dev/null; exit 3");
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap_or_else(|e| panic!("{e}\n{}", text(&o)));
    assert_eq!(v["version"], 1);
    assert_eq!(v["status"]["kind"], "exited");
    assert_eq!(v["status"]["code"], 3);
    let (wall, payload) = (v["wall"].as_f64().unwrap(), v["payload"].as_f64().unwrap());
    assert!(wall > 0.0 && payload > 0.0 && payload <= wall, "wall {wall}, payload {payload}");
    assert!(v["user"].as_f64().is_some() && v["sys"].as_f64().is_some());
    assert!(v["peak_memory_kib"].as_u64().unwrap() > 0);
    assert!(stderr(&o).contains("to-stderr"), "payload stdout goes to stderr with --json: {}", text(&o));
}

#[test]
fn json_outcome_payload_time_covers_the_command_and_not_more_than_the_sandbox() {
    let o = run_sh(&["--json"], "sleep 0.3");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap_or_else(|e| panic!("{e}\n{}", text(&o)));
    let (wall, payload) = (v["wall"].as_f64().unwrap(), v["payload"].as_f64().unwrap());
    assert!(payload >= 0.3 && payload <= wall, "wall {wall}, payload {payload}");
}

#[test]
fn a_missing_command_is_a_setup_error_with_exit_code_2() {
    let base = test_base();
    let o = output(pkgcell().arg("run").arg("--lower").arg(&base).args(["--", "no-such-command-xyz"]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let e = stderr(&o);
    assert!(e.contains("no-such-command-xyz") && e.contains("does not exist inside the sandbox"), "{e}");
}

#[test]
fn usage_errors_exit_2_and_say_what_to_do() {
    let o = output(pkgcell().args(["run", "--", "true"]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("--root DIR, --lower DIR or --base ID"), "{}", text(&o));
    let o = output(pkgcell().args(["run", "--lower", "/nonexistent-dir-xyz", "--", "true"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/nonexistent-dir-xyz"), "{}", text(&o));
}

#[test]
fn a_json_spec_can_be_given_on_stdin() {
    let base = test_base();
    let spec = serde_json::json!({
        "root": {"overlay": {"lowers": [base], "upper": {"tmpfs": {"size": 1u64 << 28}}}},
        "argv": ["sh", "-c", "echo $GREETING from $(hostname)"],
        "env": {"GREETING": "hi", "PATH": "/usr/bin:/bin"},
        "hostname": "spec-host"
    });
    let o = run_spec_on_stdin(&spec);
    assert_eq!(ok(o).trim(), "hi from spec-host");
}

#[test]
fn a_bad_json_spec_names_the_problem() {
    let d = TestDir::new();
    std::fs::write(d.join("s.json"), r#"{"root":{"dir":{"path":"/"}},"argv":["true"],"bogus":1}"#).unwrap();
    let o = output(pkgcell().args(["run", "--spec"]).arg(d.join("s.json")));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown field `bogus`"), "{}", text(&o));
}

// ------------------------------------------------------------ bounded sizes (issue: bounded resources)

/// Writes 100 MiB into DIR inside; head's error goes to stderr.
const FILL_100M: &str = "head -c 100M /dev/zero > DIR/x || { echo fill failed; exit 1; }";

#[test]
fn tmp_and_dev_shm_share_the_limit_of_a_tmpfs_upper() {
    for dir in ["/tmp", "/dev/shm"] {
        let o = run_sh(&["--tmpfs-upper", "64M"], &FILL_100M.replace("DIR", dir));
        assert_eq!(o.status.code(), Some(1), "{dir} took 100M with a 64M upper\n{}", text(&o));
        assert!(text(&o).contains("No space left"), "{dir}: {}", text(&o));
    }
}

#[test]
fn tmp_size_and_shm_size_flags_change_the_limits() {
    let o = run_sh(&["--tmpfs-upper", "64M", "--tmp-size", "128M"], &FILL_100M.replace("DIR", "/tmp"));
    assert_eq!(o.status.code(), Some(0), "--tmp-size 128M takes 100M\n{}", text(&o));
    let o = run_sh(&["--tmp-size", "16M"], &FILL_100M.replace("DIR", "/tmp"));
    assert!(text(&o).contains("No space left"), "{}", text(&o));
    let o = run_sh(&["--shm-size", "16M"], "df -k /dev/shm /tmp | tail -n 2");
    let out = ok(o);
    let sizes: Vec<&str> = out.lines().filter_map(|l| l.split_whitespace().nth(1)).collect();
    // 16M on /dev/shm; /tmp keeps the 4G of the default tmpfs upper.
    assert_eq!(sizes, ["16384", "4194304"], "{out}");
}

#[test]
fn a_spec_sizes_tmp_and_dev_shm() {
    let base = test_base();
    let d = TestDir::new();
    let spec = serde_json::json!({
        "root": {"overlay": {"lowers": [base], "upper": {"tmpfs": {"size": 1u64 << 30}}}},
        "argv": ["sh", "-c", "df -k /tmp /dev/shm | tail -n 2"],
        "env": {"PATH": "/usr/bin:/bin"},
        "tmp_size": 8u64 << 20,
        "shm_size": 4u64 << 20,
    });
    std::fs::write(d.join("s.json"), spec.to_string()).unwrap();
    let out = ok(output(pkgcell().args(["run", "--spec"]).arg(d.join("s.json"))));
    let sizes: Vec<&str> = out.lines().filter_map(|l| l.split_whitespace().nth(1)).collect();
    assert_eq!(sizes, ["8192", "4096"], "{out}");
}

#[test]
fn absurd_sizes_and_time_limits_in_a_spec_exit_2_naming_the_field() {
    let base = test_base();
    let d = TestDir::new();
    let upper = |size: serde_json::Value| serde_json::json!({"overlay": {"lowers": [base], "upper": {"tmpfs": {"size": size}}}});
    let ok_root = upper(serde_json::json!(1u64 << 28));
    let cases = [
        (upper(serde_json::json!(0)), "timeout", serde_json::json!(null), "tmpfs.size", "size of 0"),
        (upper(serde_json::json!(u64::MAX)), "timeout", serde_json::json!(null), "tmpfs.size", "larger than the largest"),
        (upper(serde_json::json!(-1)), "timeout", serde_json::json!(null), "tmpfs.size", "invalid value"),
        (ok_root.clone(), "tmp_size", serde_json::json!(0), "tmp_size", "size of 0"),
        (ok_root.clone(), "shm_size", serde_json::json!(u64::MAX), "shm_size", "larger than the largest"),
        (ok_root.clone(), "timeout", serde_json::json!(1e300), "timeout", "longer than the longest"),
        (ok_root.clone(), "timeout", serde_json::json!(-1), "timeout", "positive number"),
        (ok_root.clone(), "timeout", serde_json::json!(0), "timeout", "positive number"),
    ];
    for (root, key, value, field, why) in cases {
        let mut spec = serde_json::json!({"root": root, "argv": ["true"]});
        spec[key] = value;
        std::fs::write(d.join("s.json"), spec.to_string()).unwrap();
        let o = output(pkgcell().args(["run", "--spec"]).arg(d.join("s.json")));
        assert_eq!(o.status.code(), Some(2), "{spec}\n{}", text(&o));
        let e = stderr(&o);
        assert!(e.contains(field) && e.contains(why) && !e.contains("panicked"), "{spec}\n{e}");
    }
    // NaN is not JSON: a parse error, not a panic.
    std::fs::write(d.join("s.json"), format!(r#"{{"root":{ok_root},"argv":["true"],"timeout":NaN}}"#)).unwrap();
    let o = output(pkgcell().args(["run", "--spec"]).arg(d.join("s.json")));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", text(&o));
}

#[test]
fn absurd_sizes_and_time_limits_on_the_command_line_exit_2_naming_the_flag() {
    for (flag, value, why) in [
        ("--timeout", "1e300", "longer than the longest"),
        ("--timeout", "-1", "positive number"),
        ("--timeout", "NaN", "not a duration"),
        ("--timeout", "inf", "not a duration"),
        ("--timeout", "0", "positive number"),
        ("--tmpfs-upper", "0", "size of 0"),
        ("--tmpfs-upper", "18446744073709551615", "larger than the largest"),
        ("--tmp-size", "0", "size of 0"),
        ("--shm-size", "99999999999999999999T", "larger than the largest"),
        ("--tmp-size", "-1G", "not a size"),
    ] {
        let o = output(pkgcell().args(["run", "--root", "/", &format!("{flag}={value}"), "--", "true"]));
        assert_eq!(o.status.code(), Some(2), "{flag} {value}\n{}", text(&o));
        let e = stderr(&o);
        assert!(e.contains(flag) && e.contains(why) && !e.contains("panicked"), "{flag} {value}\n{e}");
    }
}

#[test]
fn the_environment_is_scrubbed_but_for_env_flags() {
    let out = ok(output(
        pkgcell()
            .env("SECRET_TOKEN", "leak")
            .arg("run")
            .arg("--lower")
            .arg(test_base())
            .args(["--env", "FOO=bar", "--", "sh", "-c", "env"]),
    ));
    assert!(out.contains("FOO=bar"), "{out}");
    assert!(!out.contains("SECRET_TOKEN"), "host environment leaked: {out}");
}

#[test]
fn root_inside_is_the_caller_and_subordinate_ids_exist() {
    use std::os::unix::fs::MetadataExt;
    let d = TestDir::new();
    std::fs::write(d.join("mine"), "x").unwrap();
    let bind = format!("{}:/w", d.path().display());
    let out = ok(run_sh(&["--bind", &bind], "id -u; stat -c %u /w/mine; touch /w/made; chown 1000:1000 /tmp && stat -c %u:%g /tmp"));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["0", "0", "1000:1000"], "{out}");
    let me = std::fs::metadata(d.path()).unwrap().uid();
    assert_eq!(std::fs::metadata(d.join("made")).unwrap().uid(), me, "root inside writes as the caller");
}

#[test]
fn rlimits_apply_to_the_payload() {
    let out = ok(run_sh(&["--rlimit", "nofile=64", "--rlimit", "fsize=4096"], "ulimit -n; ulimit -f; head -c 10000 /dev/zero > /tmp/big 2>/dev/null; echo rc=$?"));
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "64");
    assert_eq!(l[1], "8", "ulimit -f counts 512-byte blocks");
    assert_ne!(l[2], "rc=0", "writing past the file size limit must fail: {out}");
    let o = run_sh(&["--rlimit", "bogus=1"], "true");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown resource"), "{}", text(&o));
}

#[test]
fn a_directory_root_is_used_as_it_is() {
    let out = ok(output(pkgcell().arg("run").arg("--root").arg(test_base()).args(["--", "cat", "/etc/debian_version"])));
    assert!(!out.trim().is_empty());
}

// ------------------------------------------------------------ file system probes

#[test]
fn the_host_home_and_tmp_are_not_visible() {
    let d = TestDir::new();
    std::fs::write(d.join("marker"), "x").unwrap();
    let home = std::env::var("HOME").unwrap_or_else(|_| "/nonexistent".into());
    let script = format!(
        "test ! -e {m} && test ! -e {home}/.pkgcell-never && ! ls {home} 2>/dev/null | grep -q . ; \
         test -z \"$(ls -A /tmp)\" && echo clean",
        m = d.join("marker").display()
    );
    assert_eq!(ok(run_sh(&[], &script)).trim(), "clean");
}

#[test]
fn the_hosts_etc_is_not_the_sandboxs() {
    // The host has our test user in /etc/passwd; the base does not.
    let user = std::env::var("USER").unwrap_or_default();
    assert!(!user.is_empty());
    let o = run_sh(&[], &format!("grep -q '^{user}:' /etc/passwd && echo leaked || echo private"));
    assert_eq!(ok(o).trim(), "private");
}

#[test]
fn writes_never_reach_the_lower_dir() {
    let d = TestDir::new();
    let lower = d.join("lower");
    std::fs::create_dir_all(lower.join("etc")).unwrap();
    std::fs::write(lower.join("etc/keep"), "original").unwrap();
    std::fs::write(lower.join("gone"), "x").unwrap();
    let base = test_base();
    let o = output(
        pkgcell()
            .arg("run")
            .arg("--lower")
            .arg(&lower)
            .arg("--lower")
            .arg(&base)
            .args(["--", "sh", "-c", "echo changed > /etc/keep && rm /gone && touch /new && cat /etc/keep"]),
    );
    assert_eq!(ok(o).trim(), "changed");
    assert_eq!(std::fs::read_to_string(lower.join("etc/keep")).unwrap(), "original");
    assert!(lower.join("gone").exists());
    assert!(!lower.join("new").exists());
    assert!(!base.join("new").exists());
}

#[test]
fn a_disk_upper_keeps_the_writes_and_only_there() {
    let d = TestDir::new();
    let upper = d.join("upper");
    let o = run_sh(&["--upper", upper.to_str().unwrap()], "echo kept > /kept-file");
    ok(o);
    assert_eq!(std::fs::read_to_string(upper.join("kept-file")).unwrap().trim(), "kept");
    assert!(!test_base().join("kept-file").exists());
}

#[test]
fn the_build_user_cannot_write_to_the_base() {
    let o = run_sh(&["--uid", "1000", "--gid", "1000"], "touch /usr/bin/evil 2>&1; echo rc=$?");
    let out = ok(o);
    assert!(out.contains("Permission denied") && out.contains("rc=1"), "{out}");
}

#[test]
fn writes_to_a_read_only_bind_fail_and_do_not_reach_it() {
    let d = TestDir::new();
    std::fs::write(d.join("f"), "host").unwrap();
    let bind = format!("{}:/ro", d.path().display());
    let out = ok(run_sh(
        &["--ro-bind", &bind],
        "echo x > /ro/f 2>/dev/null && echo wrote; touch /ro/new 2>/dev/null && echo created; \
         rm -f /ro/f 2>/dev/null; cat /ro/f",
    ));
    assert_eq!(out.trim(), "host", "{out}");
    assert_eq!(std::fs::read_to_string(d.join("f")).unwrap(), "host");
    assert!(!d.join("new").exists());
}

#[test]
fn a_read_only_bind_cannot_be_remounted_writable_even_by_root_inside() {
    let d = TestDir::new();
    let bind = format!("{}:/ro", d.path().display());
    let out = ok(run_sh(
        &["--ro-bind", &bind],
        "mount -o remount,rw,bind /ro 2>/dev/null; touch /ro/x 2>/dev/null && echo writable || echo readonly",
    ));
    assert_eq!(out.trim(), "readonly");
    assert!(!d.join("x").exists());
}

#[test]
fn binds_are_nosuid_and_nodev() {
    let d = TestDir::new();
    let ro = format!("{}:/ro", d.path().display());
    let rw = format!("{}:/rw", d.path().display());
    let out = ok(run_sh(&["--ro-bind", &ro, "--bind", &rw], "grep -E ' /(ro|rw) ' /proc/self/mountinfo"));
    let ro_line = out.lines().find(|l| l.contains(" /ro ")).unwrap();
    let rw_line = out.lines().find(|l| l.contains(" /rw ")).unwrap();
    for flag in ["ro", "nosuid", "nodev"] {
        assert!(ro_line.split_whitespace().nth(5).unwrap().split(',').any(|f| f == flag), "{ro_line}");
    }
    for flag in ["rw", "nosuid", "nodev"] {
        assert!(rw_line.split_whitespace().nth(5).unwrap().split(',').any(|f| f == flag), "{rw_line}");
    }
}

#[test]
fn a_read_write_bind_reaches_the_host() {
    let d = TestDir::new();
    let bind = format!("{}:/work", d.path().display());
    ok(run_sh(&["--bind", &bind], "echo made > /work/out"));
    assert_eq!(std::fs::read_to_string(d.join("out")).unwrap().trim(), "made");
}

#[test]
fn a_symlink_cannot_send_a_mount_outside_the_root() {
    let d = TestDir::new();
    let lower = d.join("lower");
    std::fs::create_dir_all(&lower).unwrap();
    std::os::unix::fs::symlink("../../../../../../oldroot/tmp", lower.join("escape")).unwrap();
    let src = d.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let o = output(
        pkgcell()
            .arg("run")
            .arg("--lower")
            .arg(&lower)
            .arg("--lower")
            .arg(test_base())
            .arg("--bind")
            .arg(format!("{}:/escape/x", src.display()))
            .args(["--", "true"]),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("outside the sandbox root"), "{}", text(&o));
}

#[test]
fn the_old_root_is_gone() {
    let base = test_base();
    let out = ok(run_sh(&[], "test ! -e /oldroot && test ! -e /newroot && ls / && cat /proc/self/mountinfo"));
    // The overlay's options name the host paths of its layers (as with any
    // overlay), but no mount of the host remains reachable.
    for line in out.lines().filter(|l| l.split_whitespace().count() > 5) {
        let mount_point = line.split_whitespace().nth(4).unwrap();
        assert!(!mount_point.contains("oldroot"), "{line}");
    }
    assert!(!out.lines().any(|l| l == base.file_name().unwrap().to_str().unwrap()));
}

#[test]
fn mounts_do_not_leak_out_of_the_sandbox() {
    let before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let d = TestDir::new();
    let bind = format!("{}:/w", d.path().display());
    ok(run_sh(&["--bind", &bind, "--tmpfs", "/t"], "mount -t tmpfs leak /mnt && mount --bind /w /opt"));
    let after = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(before, after, "the host mount table changed");
    assert!(!after.contains("pkgcell"), "{after}");
}

#[test]
fn proc_sys_is_read_only() {
    let out = ok(run_sh(
        &[],
        "echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo wrote; \
         echo x > /proc/sysrq-trigger 2>/dev/null && echo trigger; grep ' /proc/sys ' /proc/self/mountinfo",
    ));
    assert!(!out.contains("wrote") && !out.contains("trigger"), "{out}");
    assert!(out.split_whitespace().nth(5).unwrap().split(',').any(|f| f == "ro"), "{out}");
}

#[test]
fn dev_is_minimal_and_works() {
    let out = ok(run_sh(
        &[],
        "ls /dev | tr '\\n' ' '; echo; echo x > /dev/null && head -c 4 /dev/urandom | wc -c && test -d /dev/pts && \
         test -d /dev/shm && readlink /dev/fd",
    ));
    let names: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    for must in ["null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm", "fd"] {
        assert!(names.contains(&must), "{must} missing: {out}");
    }
    for never in ["sda", "vda", "nvme0", "mem", "kmsg", "loop0"] {
        assert!(!names.contains(&never), "host device {never} visible: {out}");
    }
    assert!(out.contains("/proc/self/fd"));
}

// ------------------------------------------------------------ process probes

#[test]
fn outside_processes_are_not_visible() {
    let my_pid = std::process::id();
    let out = ok(run_sh(&[], &format!("test ! -e /proc/{my_pid} && echo hidden; ls /proc | grep -c '^[0-9]'")));
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("hidden"), "{out}");
    let n: u32 = lines.next().unwrap().trim().parse().unwrap();
    assert!(n <= 5, "only the sandbox's own few processes should be visible, saw {n}");
}

#[test]
fn the_payload_is_not_pid_1_and_pid_1_reaps() {
    let out = ok(run_sh(&[], "echo $$; (sleep 0.1 &) ; sleep 0.3; ps -eo pid,stat,comm | grep -c ' Z' || true"));
    let mut l = out.lines();
    assert_ne!(l.next().unwrap().trim(), "1");
    assert_eq!(l.next().unwrap().trim(), "0", "a zombie was left unreaped: {out}");
}

#[test]
fn outside_processes_cannot_be_signalled_or_traced() {
    let mut victim = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = victim.id();
    let out = ok(run_sh(
        &[],
        &format!(
            "kill -KILL {pid} 2>/dev/null && echo killed; kill -KILL -1 2>/dev/null; \
             cat /proc/{pid}/mem 2>/dev/null && echo traced; echo done"
        ),
    ));
    assert!(!out.contains("killed") && !out.contains("traced"), "{out}");
    assert!(victim.try_wait().unwrap().is_none(), "the outside process was killed");
    victim.kill().unwrap();
    victim.wait().unwrap();
}

#[test]
fn the_payload_runs_in_its_own_session() {
    let out = ok(run_sh(&[], "ps -o sid= -p $$; echo $$"));
    let v: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(v[0], v[1], "the payload leads its own session: {out}");
}

#[test]
fn the_build_user_has_no_capabilities_and_no_new_privs() {
    let out = ok(run_sh(&["--uid", "1000", "--gid", "1000"], "grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs)' /proc/self/status"));
    for line in out.lines() {
        let (k, v) = line.split_once(':').unwrap();
        match k {
            "NoNewPrivs" => assert_eq!(v.trim(), "1", "{out}"),
            _ => assert_eq!(v.trim(), "0000000000000000", "{k} not empty: {out}"),
        }
    }
    assert_eq!(out.lines().count(), 6, "{out}");
}

#[test]
fn root_inside_also_has_no_new_privs() {
    let out = ok(run_sh(&[], "grep NoNewPrivs /proc/self/status"));
    assert!(out.contains('1'), "{out}");
}

#[test]
fn a_setuid_root_binary_gives_the_build_user_nothing() {
    let d = TestDir::new();
    let upper = d.join("upper");
    let u = upper.to_str().unwrap();
    ok(run_sh(&["--upper", u], "cp /usr/bin/id /usr/local/bin/suid-id && chmod 4755 /usr/local/bin/suid-id"));
    let out = ok(run_sh(
        &["--upper", u, "--uid", "1000", "--gid", "1000"],
        "stat -c %a /usr/local/bin/suid-id; /usr/local/bin/suid-id -u; su -c 'id -u' root </dev/null 2>&1; echo su=$?",
    ));
    let mut l = out.lines();
    assert_eq!(l.next().unwrap().trim(), "4755", "{out}");
    assert_eq!(l.next().unwrap().trim(), "1000", "setuid bit gave root: {out}");
    assert!(!out.contains("su=0"), "su succeeded: {out}");
}

#[test]
fn no_fd_beyond_stdio_is_inherited() {
    let base = test_base();
    // Leak fd 7 into pkgcell on purpose: the payload must not get it.
    let script = format!(
        "exec 7</etc/hostname; exec {} run --lower {} -- sh -c 'ls /proc/self/fd'",
        pkgcell_bin().display(),
        base.display()
    );
    let out = ok(output(Command::new("bash").arg("-c").arg(&script)));
    let fds: Vec<&str> = out.split_whitespace().collect();
    assert!(!fds.contains(&"7"), "leaked fd: {out}");
    // 0, 1, 2 and the directory ls itself opened.
    assert!(fds.len() <= 4, "{out}");
}

// ------------------------------------------------------------ namespaces

#[test]
fn without_net_only_loopback_exists() {
    let out = ok(run_sh(&[], "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '"));
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["lo"], "{out}");
    // lo is up and has 127.0.0.1: a server inside is reachable from inside.
    let out = ok(run_sh(
        &[],
        "python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\", 0)); s.listen(); \
         c=socket.create_connection(s.getsockname()); print(\"loopback-ok\")'",
    ));
    assert_eq!(out.trim(), "loopback-ok");
}

#[test]
fn without_net_a_server_on_the_host_loopback_is_unreachable_and_with_net_it_is() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = format!(
        "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), timeout=3); print(\"connected\")' 2>/dev/null || echo refused"
    );
    assert_eq!(ok(run_sh(&[], &script)).trim(), "refused");
    listener.set_nonblocking(false).unwrap();
    let accept = std::thread::spawn(move || listener.accept().map(|_| ()));
    assert_eq!(ok(run_sh(&["--net"], &script)).trim(), "connected");
    accept.join().unwrap().unwrap();
}

#[test]
fn the_hostname_is_private_and_fixed() {
    let host_before = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let out = ok(run_sh(&[], "hostname; hostname changed-inside 2>/dev/null; hostname"));
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["pkgcell", "pkgcell"], "even root inside cannot change it");
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(), host_before);
    assert_eq!(ok(run_sh(&["--hostname", "other"], "hostname")).trim(), "other");
}

#[test]
fn sysv_ipc_is_private() {
    let o = output(Command::new("ipcmk").args(["-M", "4096"]));
    assert!(o.status.success(), "ipcmk (util-linux) is needed: {}", text(&o));
    let id = stdout(&o).split_whitespace().last().unwrap().to_owned();
    let out = ok(run_sh(&[], "ipcs -m | grep -c '^0x' || true"));
    let _ = output(Command::new("ipcrm").args(["-m", &id]));
    assert_eq!(out.trim(), "0", "host shared memory visible inside");
}

// ------------------------------------------------------------ lifetime

fn pgrep(marker: &str) -> Vec<String> {
    let o = output(Command::new("pgrep").args(["-f", marker]));
    stdout(&o).split_whitespace().map(str::to_owned).collect()
}

fn wait_for(mut cond: impl FnMut() -> bool, secs: u64) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

fn kill_supervisor_while_running(script_body: &str) {
    let marker = format!("pkgcell-marker-{}-{}", std::process::id(), script_body.len());
    let script = script_body.replace("MARKER", &marker);
    let mut child = pkgcell()
        .arg("run")
        .arg("--lower")
        .arg(test_base())
        .args(["--", "bash", "-c", &script])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for(|| pgrep(&marker).len() >= 2, 10), "payload did not start");
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    assert!(wait_for(|| pgrep(&marker).is_empty(), 5), "processes outlived the supervisor: {:?}", pgrep(&marker));
}

#[test]
fn killing_the_supervisor_kills_everything_inside() {
    kill_supervisor_while_running(
        "(exec -a MARKER-1 sleep 1000) & (exec -a MARKER-2 sleep 1000) & exec -a MARKER-3 sleep 1000",
    );
}

#[test]
fn killing_the_supervisor_kills_a_payload_that_ignores_sigterm() {
    kill_supervisor_while_running(
        "trap '' TERM HUP INT; (trap '' TERM; exec -a MARKER-child sleep 1000) & \
         setsid bash -c 'exec -a MARKER-daemon sleep 1000' & (exec -a MARKER-main sleep 1000); wait",
    );
}

#[test]
fn the_time_limit_kills_the_whole_tree() {
    let marker = format!("pkgcell-timeout-{}", std::process::id());
    let start = Instant::now();
    let base = test_base();
    let script = format!(
        "trap '' TERM; (exec -a {marker}-a sleep 1000) & setsid bash -c 'exec -a {marker}-b sleep 1000' & \
         exec -a {marker}-c sleep 1000"
    );
    let o = output(pkgcell().arg("run").arg("--lower").arg(&base).args(["--timeout", "1", "--json", "--", "bash", "-c", &script]));
    assert!(start.elapsed() < Duration::from_secs(20));
    assert_eq!(o.status.code(), Some(124), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["status"]["kind"], "timed_out");
    assert!(wait_for(|| pgrep(&marker).is_empty(), 5), "processes outlived the time limit");
}

#[test]
fn files_of_subordinate_ids_are_removed_through_the_sandbox() {
    let d = TestDir::new();
    let upper = d.join("upper");
    ok(run_sh(
        &["--upper", upper.to_str().unwrap()],
        "mkdir -p /x/locked && echo s > /x/locked/f && chown -R 1000:1000 /x && chmod 000 /x/locked",
    ));
    assert!(std::fs::remove_dir_all(&upper).is_err(), "the caller alone cannot remove it");
    pkgcell_sandbox::remove_tree_with(&upper, &pkgcell_bin(), &Default::default()).unwrap();
    assert!(!upper.exists());
}

/// A spec whose payload, as the build user 1000, fills an upper on disk
/// and a bound directory with files the caller alone could not remove (a
/// mode-000 directory), and plants in the bound one a symlink to a host
/// directory of the caller's (mode 0500) and one to a host file.
fn cleanup_spec(d: &TestDir) -> (serde_json::Value, std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let (upper, out, outside) = (d.join("upper"), d.join("out"), d.join("outside"));
    std::fs::create_dir(&out).unwrap();
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("f"), "mine").unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o500)).unwrap();
    let script = format!(
        "mkdir -p /build/deep/locked /out/sub/locked && echo x > /build/deep/locked/f && echo y > /out/sub/locked/f && \
         echo pkg > /out/a.pkg && ln -s {o} /out/dirlink && ln -s {o}/f /out/filelink && \
         chmod 000 /build/deep/locked /out/sub/locked",
        o = outside.display()
    );
    let spec = serde_json::json!({
        "root": {"overlay": {"lowers": [test_base()], "upper": {"dir": {"upper": upper, "work": d.join("work")}}}},
        "mounts": [{"bind": {"src": out, "dst": "/out", "access": "read_write"}}],
        "owners": [{"path": "/out", "uid": 1000, "gid": 1000}, {"path": "/build", "uid": 1000, "gid": 1000}],
        "uid": 1000, "gid": 1000,
        "env": {"PATH": "/usr/bin:/bin"},
        "argv": ["sh", "-c", script],
        "cleanup": [
            {"path": upper, "action": "remove"},
            {"path": d.join("work"), "action": "remove"},
            {"path": out, "action": "hand_back"}
        ]
    });
    (spec, upper, out, outside)
}

fn check_cleaned_up(upper: &std::path::Path, out: &std::path::Path, outside: &std::path::Path) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert!(!upper.exists(), "the upper was removed");
    let me = std::fs::metadata(outside).unwrap().uid();
    for p in ["", "a.pkg", "sub", "sub/locked", "sub/locked/f", "dirlink", "filelink"] {
        let m = std::fs::symlink_metadata(out.join(p)).unwrap();
        assert_eq!(m.uid(), me, "{p} was handed back");
    }
    assert_eq!(std::fs::read_to_string(out.join("sub/locked/f")).unwrap(), "y\n", "handed-back directories are searchable");
    let mode = std::fs::metadata(outside).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o500, "the symlink's target directory was not followed");
    std::fs::remove_dir_all(out).expect("the caller alone can remove a handed-back tree");
}

#[test]
fn cleanup_removes_and_hands_back_trees_of_the_build_user_without_following_symlinks() {
    require_unprivileged();
    let d = TestDir::new();
    let (spec, upper, out, outside) = cleanup_spec(&d);
    let o = run_spec_on_stdin(&spec);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!stderr(&o).contains("cleanup"), "{}", text(&o));
    check_cleaned_up(&upper, &out, &outside);
}

#[test]
fn cleanup_works_from_a_threaded_caller_whose_helper_is_exec_d() {
    require_unprivileged();
    let d = TestDir::new();
    let (spec, upper, out, outside) = cleanup_spec(&d);
    let spec: pkgcell_sandbox::Spec = serde_json::from_value(spec).unwrap();
    // A thread beside this one: the supervisor must exec the helper.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let idle = std::thread::spawn(move || rx.recv());
    let outcome = pkgcell_sandbox::Sandbox::new(spec)
        .helper_exe(pkgcell_bin())
        .stdin(Stdio::null())
        .run()
        .unwrap();
    drop(tx);
    let _ = idle.join();
    assert!(outcome.status.success(), "{outcome:?}");
    check_cleaned_up(&upper, &out, &outside);
}

// ------------------------------------------------------------ id map fallback and diagnostics

fn empty_subid(d: &TestDir) -> [(String, String); 2] {
    std::fs::write(d.join("subuid"), "").unwrap();
    std::fs::write(d.join("subgid"), "").unwrap();
    [
        ("PKGCELL_SUBUID_FILE".into(), d.join("subuid").display().to_string()),
        ("PKGCELL_SUBGID_FILE".into(), d.join("subgid").display().to_string()),
    ]
}

#[test]
fn without_a_subordinate_range_a_single_id_map_warns_and_runs() {
    let d = TestDir::new();
    let mut c = pkgcell();
    c.envs(empty_subid(&d)).arg("run").arg("--lower").arg(test_base()).args(["--json", "--", "sh", "-c", "id -u; cat /proc/self/uid_map"]);
    let o = output(&mut c);
    let e = stderr(&o);
    assert!(o.status.success(), "{}", text(&o));
    assert!(e.contains("single-id map") && e.contains("usermod --add-subuids") && e.contains("chown"), "{e}");
    assert!(e.contains("0\n"), "payload ran as 0: {e}");
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["id_map"]["kind"], "single");
}

#[test]
fn without_a_subordinate_range_a_build_user_is_a_clear_error() {
    let d = TestDir::new();
    let mut c = pkgcell();
    c.envs(empty_subid(&d)).arg("run").arg("--lower").arg(test_base()).args(["--uid", "1000", "--", "true"]);
    let o = output(&mut c);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("uid 1000 inside the sandbox is not mapped"), "{}", text(&o));
}

#[test]
fn without_newuidmap_on_path_a_single_id_map_warns_and_runs() {
    let d = TestDir::new();
    let bin = d.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let o = output(pkgcell().env("PATH", &bin).arg("run").arg("--lower").arg(test_base()).args(["--", "true"]));
    assert!(o.status.success(), "{}", text(&o));
    assert!(stderr(&o).contains("newuidmap was not found on PATH"), "{}", text(&o));
}

#[test]
fn disabled_user_namespaces_are_diagnosed() {
    // A child user namespace may lower its own limit to 0; pkgcell runs inside it.
    let script = format!(
        "echo 0 > /proc/sys/user/max_user_namespaces && exec {} run --lower {} -- true",
        pkgcell_bin().display(),
        test_base().display()
    );
    let o = output(Command::new("unshare").args(["--user", "--map-root-user", "sh", "-c", &script]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("user.max_user_namespaces"), "{}", text(&o));
}

#[test]
fn a_refused_proc_mount_is_diagnosed() {
    // Covering a file of /proc makes the kernel refuse a fresh /proc in a
    // nested user namespace, as in containers that mask /proc paths.
    let script = format!(
        "mount --bind /dev/null /proc/meminfo && exec {} run --lower {} -- true",
        pkgcell_bin().display(),
        test_base().display()
    );
    let o = output(Command::new("unshare").args(["--user", "--map-root-user", "--mount", "sh", "-c", &script]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let e = stderr(&o);
    assert!(e.contains("cannot mount /proc") && e.contains("partly covered"), "{e}");
}

#[test]
fn an_upper_dir_on_an_overlayfs_is_diagnosed() {
    // Inside a sandbox the root is an overlayfs, which cannot hold another
    // overlay's upper dir: run pkgcell there with its upper on it.
    let script = "mkdir -p /var/lower /var/up && pkgcell run --lower /var/lower --upper /var/up -- /bin/true; echo upper-rc=$?";
    let o = in_a_sandbox_with_pkgcell(script);
    let out = text(&o);
    assert!(out.contains("upper-rc=2"), "{out}");
    assert!(out.contains("cannot mount the overlay root") && out.contains("upper dir must be on a file system"), "{out}");
}

#[test]
fn it_works_when_the_caller_is_itself_in_a_user_namespace() {
    let script = format!(
        "exec {} run --lower {} -- sh -c 'echo nested-ok; id -u'",
        pkgcell_bin().display(),
        test_base().display()
    );
    let o = output(Command::new("unshare").args(["--user", "--map-root-user", "sh", "-c", &script]));
    assert_eq!(ok(o).split_whitespace().collect::<Vec<_>>(), ["nested-ok", "0"]);
}

// ------------------------------------------------------------ keyring and syscall filter

/// Compile tests/fixtures/probe/syscall-probe.c inside a sandbox with the
/// test base's gcc and run it in `mode`; its report as name -> result
/// ("ok", "EPERM" or "errno=N"). `extra`: more `pkgcell run` flags.
fn syscall_probe(extra: &[&str], mode: &str) -> std::collections::BTreeMap<String, String> {
    let d = TestDir::new();
    copy_fixture("probe", &d.join("hostile"));
    let bind = format!("{}:/probe", d.join("hostile").display());
    let script = format!("gcc -o /tmp/probe /probe/syscall-probe.c && /tmp/probe {mode}");
    let mut args = vec!["--ro-bind", &bind];
    args.extend_from_slice(extra);
    probe_lines(&ok(run_sh(&args, &script)))
}

fn probe_lines(out: &str) -> std::collections::BTreeMap<String, String> {
    out.lines().filter_map(|l| l.split_once(' ')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

#[test]
fn the_syscall_filter_denies_what_no_build_needs_with_eperm() {
    let r = syscall_probe(&[], "filter");
    for denied in [
        "keyctl",
        "add_key",
        "request_key",
        "bpf",
        "userfaultfd",
        "io_uring_setup",
        "perf_event_open",
        "socket_packet",
        "socket_netlink_audit",
        "socket_alg",
        "socket_packet_high_bits",
        "x32_keyctl",
    ] {
        assert_eq!(r.get(denied).map(String::as_str), Some("EPERM"), "{denied}: {r:?}");
    }
    for allowed in ["socket_netlink_route", "socket_unix", "socket_inet", "socket_inet6"] {
        assert_eq!(r.get(allowed).map(String::as_str), Some("ok"), "{allowed}: {r:?}");
    }
    // The i386 ABI (int 0x80) gets the same rules; only where the kernel
    // runs it at all (CONFIG_IA32_EMULATION).
    if r.get("i386_getpid").map(String::as_str) == Some("ok") {
        assert_eq!(r.get("i386_keyctl").map(String::as_str), Some("EPERM"), "{r:?}");
    } else {
        eprintln!("skipped the i386 probe: this kernel does not run i386 syscalls ({r:?})");
    }
}

/// The probes whose EPERM can only come from the filter: with it off, the
/// kernel answers them otherwise on any configuration we test on.
fn assert_not_filtered(r: &std::collections::BTreeMap<String, String>) {
    let mut unfiltered = vec!["keyctl", "add_key", "request_key", "perf_event_open", "socket_netlink_audit", "socket_alg", "x32_keyctl"];
    // kernel.io_uring_disabled=2 makes the kernel itself answer EPERM.
    if std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").map_or(true, |s| s.trim() != "2") {
        unfiltered.push("io_uring_setup");
    }
    for name in unfiltered {
        let got = r.get(name).map(String::as_str);
        assert!(got.is_some() && got != Some("EPERM"), "{name} is still filtered: {r:?}");
    }
    if r.get("i386_getpid").map(String::as_str) == Some("ok") {
        assert_eq!(r.get("i386_keyctl").map(String::as_str), Some("ok"), "{r:?}");
    }
}

#[test]
fn seccomp_off_runs_the_payload_without_the_filter() {
    assert_not_filtered(&syscall_probe(&["--seccomp", "off"], "filter"));
}

#[test]
fn the_spec_field_seccomp_off_turns_the_filter_off_too() {
    let d = TestDir::new();
    copy_fixture("probe", &d.join("hostile"));
    let run = |seccomp: Option<&str>| {
        let mut spec = serde_json::json!({
            "root": {"overlay": {"lowers": [test_base()], "upper": {"tmpfs": {"size": 1u64 << 28}}}},
            "mounts": [{"bind": {"src": d.join("hostile"), "dst": "/probe"}}],
            "argv": ["sh", "-c", "gcc -o /tmp/probe /probe/syscall-probe.c && /tmp/probe filter"],
            "env": {"PATH": "/usr/bin:/bin"}
        });
        if let Some(s) = seccomp {
            spec["seccomp"] = s.into();
        }
        probe_lines(&ok(run_spec_on_stdin(&spec)))
    };
    assert_eq!(run(None).get("keyctl").map(String::as_str), Some("EPERM"), "the filter is on by default");
    assert_eq!(run(Some("on")).get("keyctl").map(String::as_str), Some("EPERM"));
    assert_not_filtered(&run(Some("off")));
}

/// Run the keyring probe in a sandbox from a fresh session keyring of the
/// test's own that holds `pkgcell-host-key`; the probe's report plus
/// `host_sees_inside_key` and `host_key_still_there` from the host side.
fn keyring_probe(extra: &[&str]) -> std::collections::BTreeMap<String, String> {
    let o = output(Command::new("keyctl").arg("--version"));
    assert!(o.status.success(), "keyctl (keyutils) is needed: scripts/install-deps installs it: {}", text(&o));
    let d = TestDir::new();
    copy_fixture("probe", &d.join("hostile"));
    let script = format!(
        "keyctl add user pkgcell-host-key secret @s >/dev/null || exit 3
         {pkgcell} run --lower {base} --ro-bind {probe}:/probe {extra} -- \
             sh -c 'gcc -o /tmp/probe /probe/syscall-probe.c && /tmp/probe keyring' || exit 4
         keyctl search @s user pkgcell-inside-key >/dev/null 2>&1 && echo host_sees_inside_key yes || echo host_sees_inside_key no
         keyctl search @s user pkgcell-host-key >/dev/null 2>&1 && echo host_key_still_there yes || echo host_key_still_there no",
        pkgcell = pkgcell_bin().display(),
        base = test_base().display(),
        probe = d.join("hostile").display(),
        extra = extra.join(" "),
    );
    // `keyctl session -`: a new anonymous session keyring for this test
    // alone, so that tests running in parallel do not see each other's keys.
    probe_lines(&ok(output(Command::new("keyctl").args(["session", "-", "sh", "-c", &script]))))
}

#[test]
fn the_sandbox_starts_in_an_empty_session_keyring_of_its_own() {
    // With the filter off the keyring calls reach the kernel: this is what
    // shows the fresh session keyring.
    let r = keyring_probe(&["--seccomp", "off"]);
    assert_eq!(r.get("search_host_key").map(String::as_str), Some("errno=126"), "ENOKEY: the host's key is not reachable: {r:?}");
    assert_eq!(r.get("add_inside_key").map(String::as_str), Some("ok"), "{r:?}");
    assert_eq!(r.get("search_inside_key").map(String::as_str), Some("ok"), "the probe finds a key where there is one: {r:?}");
    assert_eq!(r.get("host_sees_inside_key").map(String::as_str), Some("no"), "a key planted inside reached the host: {r:?}");
    assert_eq!(r.get("host_key_still_there").map(String::as_str), Some("yes"), "{r:?}");
}

#[test]
fn with_the_filter_on_keyrings_are_out_of_reach_altogether() {
    let r = keyring_probe(&[]);
    for name in ["search_host_key", "add_inside_key"] {
        assert_eq!(r.get(name).map(String::as_str), Some("EPERM"), "{name}: {r:?}");
    }
    assert_eq!(r.get("host_sees_inside_key").map(String::as_str), Some("no"), "{r:?}");
}

// ------------------------------------------------------------ hostile mount points

/// Entries of `dir`, for "nothing was created there".
fn entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn mount_points_through_a_symlink_to_the_host_are_refused_and_create_nothing() {
    let d = TestDir::new();
    // The host directory the layer aims at, as pid 1 sees it while it builds
    // the root (the host's root is then at /oldroot).
    let host = d.join("host");
    std::fs::create_dir(&host).unwrap();
    let aim = format!("/oldroot{}", host.display());
    let lower = d.join("lower");
    let root = d.join("root");
    for layer in [&lower, &root] {
        std::fs::create_dir(layer).unwrap();
        std::os::unix::fs::symlink(&aim, layer.join("evil")).unwrap();
    }
    let src = d.join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(d.join("file"), "x").unwrap();
    let bind = format!("{}:/evil/sub", src.display());
    let file_bind = format!("{}:/evil/file", d.join("file").display());
    let dotdot = format!("{aim}/y");
    let dotdot = format!("/..{dotdot}");
    let dotdot_bind = format!("{}:{dotdot}", src.display());
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        ("--lower", vec!["--bind", &bind], "does not exist inside the sandbox root"),
        ("--lower", vec!["--ro-bind", &file_bind], "does not exist inside the sandbox root"),
        ("--lower", vec!["--tmpfs", "/evil/x"], "does not exist inside the sandbox root"),
        ("--lower", vec!["--tmpfs", "/evil"], "does not exist inside the sandbox root"),
        ("--root", vec!["--tmpfs", "/evil/x/y"], "does not exist inside the sandbox root"),
        ("--lower", vec!["--tmpfs", &dotdot], "contains '..'"),
        ("--lower", vec!["--bind", &dotdot_bind], "contains '..'"),
    ];
    for (how, flags, message) in &cases {
        let layer = if *how == "--root" { &root } else { &lower };
        let o = output(pkgcell().arg("run").arg(how).arg(layer).args(flags).args(["--", "true"]));
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {}", text(&o));
        assert!(stderr(&o).contains(message), "{flags:?}: {}", text(&o));
        assert_eq!(entries(&host), Vec::<String>::new(), "{flags:?} created something on the host");
        assert_eq!(entries(&src), Vec::<String>::new(), "{flags:?}");
    }
}

#[test]
fn a_symlinked_mount_point_resolves_inside_the_root() {
    let d = TestDir::new();
    let lower = d.join("lower");
    std::fs::create_dir_all(lower.join("opt/real")).unwrap();
    // Absolute, and with more `..` than there are levels: both stay inside.
    std::os::unix::fs::symlink("/opt/real", lower.join("inroot")).unwrap();
    std::os::unix::fs::symlink("../../../../opt/real", lower.join("updots")).unwrap();
    let o = output(
        pkgcell()
            .arg("run")
            .arg("--lower")
            .arg(&lower)
            .arg("--lower")
            .arg(test_base())
            .args(["--tmpfs", "/inroot/t", "--tmpfs", "/updots/u", "--"])
            .args(["sh", "-c", "awk '{print $5}' /proc/self/mountinfo | grep '^/opt/real/'"]),
    );
    let out = ok(o);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["/opt/real/t", "/opt/real/u"], "{out}");
    assert_eq!(entries(&lower.join("opt/real")), Vec::<String>::new(), "the lower layer is never written");
}

#[test]
fn inside_a_filtered_sandbox_pkgcell_skips_the_keyring_with_its_filter_on_and_says_why_when_off() {
    // The outer filter denies keyctl, so an inner sandbox cannot join a
    // fresh keyring: with its own filter on that is fine (no keyring is
    // reachable from its payload anyway) and setup goes on to the mounts
    // (where a nested sandbox fails for other reasons); with --seccomp off
    // it is a setup error at the keyring step, with a hint.
    let script = "exec 2>&1; pkgcell run --lower / -- /bin/true; echo on-rc=$?; echo ---; \
                  pkgcell run --seccomp off --lower / -- /bin/true; echo off-rc=$?";
    let o = in_a_sandbox_with_pkgcell(script);
    let out = stdout(&o);
    let (on, off) = out.split_once("---").unwrap_or_else(|| panic!("{out}"));
    assert!(!on.contains("keyring") && on.contains("cannot mount"), "{on}");
    assert!(off.contains("off-rc=2") && off.contains("cannot join a fresh session keyring"), "{off}");
    assert!(off.contains("denies keyctl"), "{off}");
}

/// `sh -c SCRIPT` in a sandbox over the test base, with this pkgcell bound
/// at /usr/local/bin/pkgcell: pkgcell run inside pkgcell.
fn in_a_sandbox_with_pkgcell(script: &str) -> Output {
    output(
        pkgcell()
            .arg("run")
            .arg("--lower")
            .arg(test_base())
            .arg("--ro-bind")
            .arg(format!("{}:/usr/local/bin/pkgcell", pkgcell_bin().display()))
            .args(["--", "sh", "-c", script]),
    )
}

/// `pkgcell run --spec -` with `spec` written to its stdin.
fn run_spec_on_stdin(spec: &serde_json::Value) -> std::process::Output {
    let mut child = pkgcell()
        .args(["run", "--spec", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), spec).unwrap();
    child.wait_with_output().unwrap()
}
