package listen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
)

// PeerCred is the AuthInfo of a call on the unix socket: who the kernel
// says connected (SO_PEERCRED), which a caller cannot forge. The auth
// layer keys its failure budget on UID, so that one local user's wrong
// tokens cost no other user anything.
type PeerCred struct {
	credentials.CommonAuthInfo
	UID, GID uint32
	PID      int32
}

// AuthType implements credentials.AuthInfo.
func (PeerCred) AuthType() string { return "peercred" }

// PeerKey is how the auth layer names this peer.
func (p PeerCred) PeerKey() string { return "unix-uid:" + strconv.FormatUint(uint64(p.UID), 10) }

// errNoPeerCred means a connection's peer credentials cannot be read; the
// connection is refused rather than served as an unknown peer.
var errNoPeerCred = errors.New("no peer credentials")

// peerCreds is the transport of the unix socket: no encryption, which a
// local socket does not need, but the kernel's word on the peer.
type peerCreds struct{}

func (peerCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, nil, fmt.Errorf("%w: %T is not a socket", errNoPeerCred, c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", errNoPeerCred, err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := rc.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", errNoPeerCred, err)
	}
	if credErr != nil {
		return nil, nil, fmt.Errorf("%w: %v", errNoPeerCred, credErr)
	}
	return c, PeerCred{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		UID:            cred.Uid, GID: cred.Gid, PID: cred.Pid,
	}, nil
}

func (peerCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("peercred: server side only")
}

func (peerCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "peercred"}
}

func (p peerCreds) Clone() credentials.TransportCredentials { return p }

func (peerCreds) OverrideServerName(string) error { return nil }
