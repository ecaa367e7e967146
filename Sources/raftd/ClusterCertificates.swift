import Crypto
import Foundation
import SwiftASN1
import X509

/// The certificates of a local cluster for `raftd init --tls`: a CA made for this cluster
/// (its key is written too, so an operator can sign more nodes, mode 0600), and for each
/// node a certificate for both server and client use, naming 127.0.0.1 and localhost,
/// signed by that CA. P-256 keys; the CA is valid for 10 years, node certificates for 2
/// (`raftd serve` warns 30 days before, and exports the expiry as a metric).
///
/// For a production cluster, an operator's own CA and certificates go in the same three
/// `[tls]` fields: each node's certificate must name the address clients dial, and every
/// node's certificate must chain to `ca_file`.
enum ClusterCertificates {
    struct Files {
        var ca: String
        var certificates: [String]
        var keys: [String]
    }

    static func write(to directory: String, nodes: Int, hosts: [String] = ["127.0.0.1"]) throws -> Files {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let caKey = P256.Signing.PrivateKey()
        let caName = try name("raftd cluster CA")
        let caExtensions = try Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
            Critical(KeyUsage(keyCertSign: true, cRLSign: true))
        }
        let caFile = directory + "/ca.pem"
        try store(
            try issue(caName, key: caKey, extensions: caExtensions, years: 10, by: (caName, caKey)), key: caKey,
            as: caFile, keyFile: directory + "/ca.key")

        var names: [GeneralName] = [.dnsName("localhost")]
        for host in hosts {
            guard let address = IPv4(host) else { continue }
            names.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(address))))
        }
        let nodeExtensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true))
            try ExtendedKeyUsage([.serverAuth, .clientAuth])
            SubjectAlternativeNames(names)
        }
        var files = Files(ca: caFile, certificates: [], keys: [])
        for node in 1...nodes {
            let key = P256.Signing.PrivateKey()
            let certificate = try issue(
                try name("node\(node)"), key: key, extensions: nodeExtensions, years: 2, by: (caName, caKey))
            files.certificates.append(directory + "/node\(node).pem")
            files.keys.append(directory + "/node\(node).key")
            try store(certificate, key: key, as: files.certificates[node - 1], keyFile: files.keys[node - 1])
        }
        return files
    }

    private static func name(_ common: String) throws -> DistinguishedName {
        try DistinguishedName {
            OrganizationName("raftd")
            CommonName(common)
        }
    }

    /// A certificate for `key`, valid from an hour ago (clock skew) for `years`, signed by
    /// the issuer's key.
    private static func issue(
        _ subject: DistinguishedName, key: P256.Signing.PrivateKey, extensions: Certificate.Extensions, years: Int,
        by issuer: (name: DistinguishedName, key: P256.Signing.PrivateKey)
    ) throws -> Certificate {
        let now = Date()
        return try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3_600),
            notValidAfter: now.addingTimeInterval(Double(years) * 365 * 24 * 3_600),
            issuer: issuer.name, subject: subject, signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions,
            issuerPrivateKey: .init(issuer.key))
    }

    /// The certificate (mode 0644) and its key (0600), as PEM.
    private static func store(
        _ certificate: Certificate, key: P256.Signing.PrivateKey, as file: String, keyFile: String
    ) throws {
        try write(try certificate.serializeAsPEM().pemString, to: file, mode: 0o644)
        try write(key.pemRepresentation, to: keyFile, mode: 0o600)
    }

    /// The four bytes of a dotted IPv4 address, or nil.
    private static func IPv4(_ text: String) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false).compactMap { UInt8($0) }
        return parts.count == 4 ? parts : nil
    }

    /// A new file (never over an existing one) with `mode` from its creation.
    private static func write(_ text: String, to path: String, mode: mode_t) throws {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL, mode)
        guard fd >= 0 else { throw CertificateFileError(path: path, reason: String(cString: strerror(errno))) }
        defer { Glibc.close(fd) }
        let bytes = Array(text.utf8)
        guard Glibc.write(fd, bytes, bytes.count) == bytes.count, fsync(fd) == 0 else {
            throw CertificateFileError(path: path, reason: String(cString: strerror(errno)))
        }
    }

    struct CertificateFileError: Error, CustomStringConvertible {
        var path: String
        var reason: String
        var description: String { "cannot write \(path): \(reason)" }
    }
}
