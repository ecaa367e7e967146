import NIOCore
import NIOSSL

/// Mutual TLS on the peer port: every connection is encrypted, and each end presents a
/// certificate signed by the cluster's CA, or the connection is closed during the TLS
/// handshake, before a byte of raftd's own protocol is read.
///
/// TLS adds secrecy and keeps strangers without a CA-signed certificate out early. It does
/// not replace the membership handshake that runs inside it: the node ID and the cluster
/// are still proven by the HMAC over the shared secret, so a certificate's names are not
/// checked against the node (peers are dialled by address, and one CA-signed certificate
/// per node is all an operator has to manage).
public struct PeerTLS: Sendable {
    let server: NIOSSLContext
    let client: NIOSSLContext
    /// This node's leaf certificate (DER), for the handshake's channel binding.
    let leafDER: [UInt8]
    /// When this node's certificate stops being valid (seconds since 1970).
    public let notValidAfter: Int

    /// Loads PEM files: this node's certificate (chain), its private key, and the CA
    /// certificate(s) that signed the certificates of every node of the cluster.
    public init(certificateFile: String, keyFile: String, caFile: String) throws(PeerTransportError) {
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        let roots: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificateFile)
        } catch {
            throw .configuration("TLS certificate \(certificateFile) cannot be read as PEM: \(error)")
        }
        do {
            key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
        } catch {
            throw .configuration("TLS key \(keyFile) cannot be read as a PEM private key: \(error)")
        }
        do {
            roots = try NIOSSLCertificate.fromPEMFile(caFile)
        } catch {
            throw .configuration("TLS CA \(caFile) cannot be read as PEM: \(error)")
        }
        guard !chain.isEmpty else { throw .configuration("TLS certificate \(certificateFile) holds no certificate") }
        guard !roots.isEmpty else { throw .configuration("TLS CA \(caFile) holds no certificate") }
        do {
            leafDER = try chain[0].toDERBytes()
        } catch {
            throw .configuration("TLS certificate \(certificateFile): \(error)")
        }
        notValidAfter = Int(chain[0].notValidAfter)
        var serverConfiguration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        serverConfiguration.trustRoots = .certificates(roots)
        serverConfiguration.certificateVerification = .noHostnameVerification
        serverConfiguration.minimumTLSVersion = .tlsv13
        // A close waits this long for the peer's close_notify (NIOSSL's default is 5 s,
        // during which a stalled peer's frames are dropped and its redial waits).
        serverConfiguration.shutdownTimeout = .milliseconds(200)
        var clientConfiguration = TLSConfiguration.makeClientConfiguration()
        clientConfiguration.certificateChain = chain.map { .certificate($0) }
        clientConfiguration.privateKey = .privateKey(key)
        clientConfiguration.trustRoots = .certificates(roots)
        clientConfiguration.certificateVerification = .noHostnameVerification
        clientConfiguration.minimumTLSVersion = .tlsv13
        clientConfiguration.shutdownTimeout = .milliseconds(200)
        do {
            server = try NIOSSLContext(configuration: serverConfiguration)
            client = try NIOSSLContext(configuration: clientConfiguration)
        } catch {
            throw .configuration(
                "TLS: the certificate \(certificateFile) and key \(keyFile) do not make a usable context (does the key belong to the certificate?): \(error)"
            )
        }
    }

    /// The handler that goes first in a connection's pipeline.
    func handler(dialer: Bool) throws -> any ChannelHandler {
        dialer ? try NIOSSLClientHandler(context: client, serverHostname: nil) : NIOSSLServerHandler(context: server)
    }
}
