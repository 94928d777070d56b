//! Throwaway TLS material for TLS tests, made with the `openssl` command:
//! a CA, a server certificate for 127.0.0.1/localhost signed by it, a
//! client certificate signed by it, and a second, unrelated CA (to show
//! that a wrong CA is refused).
//!
//! Hard cases: rustls (our client) insists on a subjectAltName matching the
//! endpoint host (no CN fallback) and on a proper CA certificate
//! (basicConstraints CA:TRUE), so both are set explicitly. Keys are P-256
//! ECDSA, accepted by rustls and by etcd (Go). The client certificate's CN
//! is not an etcd user name: with `--client-cert-auth` and authentication
//! on, etcd treats a client certificate's CN as the user when no token is
//! sent, and tests of password authentication must not pass through it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::process::{find_binary, run_bounded};

/// PEM files in one directory (owned by the caller).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed nothing here.
    pub other_ca_cert: PathBuf,
}

impl TlsFiles {
    /// Generates everything into `dir` (which must exist).
    pub fn generate(dir: &Path) -> Result<TlsFiles> {
        let openssl = find_binary("openssl", "TORTIE_OPENSSL_BIN", "openssl")?;
        let file = |name: &str| dir.join(name);
        let files = TlsFiles {
            ca_cert: file("ca.pem"),
            server_cert: file("server.pem"),
            server_key: file("server-key.pem"),
            client_cert: file("client.pem"),
            client_key: file("client-key.pem"),
            other_ca_cert: file("other-ca.pem"),
        };
        let ca_key = file("ca-key.pem");
        self_signed_ca(&openssl, &ca_key, &files.ca_cert, "tortie-test-ca")?;
        self_signed_ca(
            &openssl,
            &file("other-ca-key.pem"),
            &files.other_ca_cert,
            "tortie-other-ca",
        )?;
        signed(
            &openssl,
            dir,
            (&files.ca_cert, &ca_key),
            (&files.server_cert, &files.server_key),
            ("etcd-server", 1),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
             basicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth,clientAuth\n",
        )?;
        signed(
            &openssl,
            dir,
            (&files.ca_cert, &ca_key),
            (&files.client_cert, &files.client_key),
            ("tortie-test-client", 2),
            "basicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\n\
             extendedKeyUsage=clientAuth\n",
        )?;
        Ok(files)
    }
}

const EC_KEY: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

fn self_signed_ca(openssl: &Path, key: &Path, cert: &Path, name: &str) -> Result<()> {
    run(Command::new(openssl)
        .args(["req", "-x509", "-nodes", "-days", "2"])
        .args(EC_KEY)
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .args(["-subj", &format!("/CN={name}")])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]))
}

fn signed(
    openssl: &Path,
    dir: &Path,
    (ca_cert, ca_key): (&Path, &Path),
    (cert, key): (&Path, &Path),
    (name, serial): (&str, u32),
    extensions: &str,
) -> Result<()> {
    let request = dir.join(format!("{name}.csr"));
    let extension_file = dir.join(format!("{name}.ext"));
    std::fs::write(&extension_file, extensions)
        .with_context(|| format!("writing {}", extension_file.display()))?;
    run(Command::new(openssl)
        .args(["req", "-nodes"])
        .args(EC_KEY)
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(&request)
        .args(["-subj", &format!("/CN={name}")]))?;
    // The CA is fresh, so small serials are unique under it.
    let serial = serial.to_string();
    run(Command::new(openssl)
        .args(["x509", "-req", "-days", "2", "-set_serial", &serial])
        .arg("-in")
        .arg(&request)
        .arg("-CA")
        .arg(ca_cert)
        .arg("-CAkey")
        .arg(ca_key)
        .arg("-out")
        .arg(cert)
        .arg("-extfile")
        .arg(&extension_file))
}

fn run(command: &mut Command) -> Result<()> {
    let output = run_bounded(command, Duration::from_secs(30))?;
    ensure!(
        output.status.success(),
        "{command:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_chain_to_their_ca() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let files = TlsFiles::generate(dir.path())?;
        let openssl = find_binary("openssl", "TORTIE_OPENSSL_BIN", "openssl")?;
        for cert in [&files.server_cert, &files.client_cert] {
            let verified = run_bounded(
                Command::new(&openssl)
                    .args(["verify", "-CAfile"])
                    .arg(&files.ca_cert)
                    .arg(cert),
                Duration::from_secs(10),
            )?;
            assert!(verified.status.success(), "{cert:?} does not verify");
            let wrong = run_bounded(
                Command::new(&openssl)
                    .args(["verify", "-CAfile"])
                    .arg(&files.other_ca_cert)
                    .arg(cert),
                Duration::from_secs(10),
            )?;
            assert!(
                !wrong.status.success(),
                "{cert:?} verifies against the other CA"
            );
        }
        Ok(())
    }
}
