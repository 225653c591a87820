package ricochet

// UDPTransport: the Ricochet Transport over real UDP sockets.
//
// Two delivery modes, chosen per group:
//
//   - IP multicast, when the group has a multicast address (JoinGroup /
//     SetGroupAddr / UDPConfig.MulticastGroups): Multicast sends ONE datagram
//     to groupIP:MulticastPort and the network copies it to every joined
//     socket. The members argument is then ignored: membership is the set of
//     sockets that joined.
//   - Unicast fan-out otherwise: one datagram per member, all written with a
//     single sendmmsg(2) call on Linux (golang.org/x/net/ipv4 WriteBatch).
//
// Sockets. Each transport owns a unicast socket (UDPConfig.ListenAddr) used
// for every send and for unicast receive, and, when MulticastPort is set, a
// multicast socket bound to 0.0.0.0:MulticastPort with SO_REUSEADDR so
// several nodes on one host can share the port (every joined socket gets its
// own copy of each multicast datagram), and IP_MULTICAST_ALL off (Linux) so
// a socket only receives the groups IT joined, not every group joined by any
// socket on the host. Multicast is sent from the unicast socket with
// IP_MULTICAST_IF = MulticastInterface, IP_MULTICAST_LOOP =
// MulticastLoopback (needed whenever two nodes share a host, e.g. tests on
// "lo") and IP_MULTICAST_TTL = MulticastTTL. Our own multicast datagrams come
// back through loopback; they are discarded (counted as SelfEchoes).
//
// Receive path. One reader goroutine per socket reads batches of datagrams
// (recvmmsg(2) on Linux via ipv4.PacketConn.ReadBatch) into buffers it
// reuses, decodes and authenticates each with its own Codec (decoded packets
// are copies), and offers the result to the bounded Inbound channel without
// blocking: when the consumer is behind, the packet is dropped and counted
// (WireDropOverflow). A reader therefore never blocks on the consumer, so a
// slow engine looks like packet loss, which Ricochet repairs, instead of
// stalling the socket (whose kernel buffer would then overflow anyway, less
// visibly). Every datagram that fails decoding is dropped and counted by
// reason (UDPStats.Dropped); nothing a peer sends can crash the process.
//
// Close closes both sockets, which unblocks the readers, waits for them, and
// then closes the Inbound channel. No goroutine outlives Close.

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/ipv4"
)

// UDPConfig configures a UDPTransport. Zero fields are invalid unless the
// field says otherwise; start from DefaultUDPConfig or LoopbackUDPConfig.
type UDPConfig struct {
	// Self is this node's ID: it is the From of every packet we send, and
	// received packets with From == Self (our own multicast echoes) are discarded.
	Self NodeID
	// ListenAddr is the unicast socket's "host:port" (port 0 = ephemeral).
	// Default ":0" (LAN), "127.0.0.1:0" (loopback).
	ListenAddr string
	// Wire configures the codec: cluster keys and the datagram size limit.
	Wire WireConfig
	// Peers is the initial address book: node -> unicast address. Optional;
	// see SetPeer.
	Peers map[NodeID]*net.UDPAddr
	// MulticastPort is the UDP port every multicast group uses. 0 disables
	// IP multicast: all groups then use unicast fan-out.
	MulticastPort int
	// MulticastGroups are groups to join at start: group -> IPv4 multicast
	// address (e.g. 239.1.0.7). Requires MulticastPort. Optional; see JoinGroup.
	MulticastGroups map[GroupID]net.IP
	// MulticastInterface names the interface to join groups on and to send
	// multicast from ("lo", "eth0"). "" lets the kernel choose by routing.
	MulticastInterface string
	// MulticastLoopback delivers our multicast datagrams to sockets on this
	// host as well. Required when several nodes share a host. Default false
	// (LAN), true (loopback).
	MulticastLoopback bool
	// MulticastTTL is the IP TTL of multicast datagrams (hops). Default 1:
	// the local network only.
	MulticastTTL int
	// InboundQueue is the capacity of the Inbound channel, in packets.
	// Overflow is dropped and counted. Default 8192.
	InboundQueue int
	// BatchSize is the number of datagrams read per recvmmsg call and the
	// maximum written per sendmmsg call. Default 64; range [1, 1024].
	BatchSize int
	// SocketBuffer is the requested SO_RCVBUF and SO_SNDBUF, in bytes (the
	// kernel caps it at net.core.rmem_max / wmem_max). Default 4 MiB. 0 keeps
	// the system default.
	SocketBuffer int
	// Now is the clock stamped on Inbound.At. Default time.Now.
	Now func() time.Time
	// Logger receives rare events (read errors, joins). Default zap.NewNop().
	Logger *zap.Logger
}

// DefaultUDPConfig is a LAN preset: ephemeral port on all interfaces,
// Ethernet-sized datagrams, unicast fan-out (set MulticastPort and groups to
// use IP multicast).
func DefaultUDPConfig(self NodeID, keys ...[]byte) UDPConfig {
	return UDPConfig{
		Self:         self,
		ListenAddr:   ":0",
		Wire:         DefaultWireConfig(keys...),
		MulticastTTL: 1,
		InboundQueue: 8192,
		BatchSize:    64,
		SocketBuffer: 4 << 20,
	}
}

// LoopbackUDPConfig is a single-host preset (tests, benchmarks): 127.0.0.1,
// 64 KiB datagrams, multicast (when enabled) on "lo" with loopback on.
func LoopbackUDPConfig(self NodeID, keys ...[]byte) UDPConfig {
	c := DefaultUDPConfig(self, keys...)
	c.ListenAddr = "127.0.0.1:0"
	c.Wire = LoopbackWireConfig(keys...)
	c.MulticastInterface = "lo"
	c.MulticastLoopback = true
	return c
}

// Validate reports whether the config can start a transport.
func (c UDPConfig) Validate() error {
	if err := c.Wire.Validate(); err != nil {
		return err
	}
	if c.ListenAddr == "" {
		return fmt.Errorf("%w: empty ListenAddr", ErrUDPConfig)
	}
	if c.MulticastPort < 0 || c.MulticastPort > 65535 {
		return fmt.Errorf("%w: MulticastPort %d", ErrUDPConfig, c.MulticastPort)
	}
	if len(c.MulticastGroups) > 0 && c.MulticastPort == 0 {
		return fmt.Errorf("%w: MulticastGroups set without MulticastPort", ErrUDPConfig)
	}
	for g, ip := range c.MulticastGroups {
		if err := checkMulticastIP(ip); err != nil {
			return fmt.Errorf("group %d: %w", g, err)
		}
	}
	if c.MulticastTTL < 0 || c.MulticastTTL > 255 {
		return fmt.Errorf("%w: MulticastTTL %d", ErrUDPConfig, c.MulticastTTL)
	}
	if c.InboundQueue < 1 {
		return fmt.Errorf("%w: InboundQueue %d", ErrUDPConfig, c.InboundQueue)
	}
	if c.BatchSize < 1 || c.BatchSize > 1024 {
		return fmt.Errorf("%w: BatchSize %d outside [1, 1024]", ErrUDPConfig, c.BatchSize)
	}
	if c.SocketBuffer < 0 {
		return fmt.Errorf("%w: SocketBuffer %d", ErrUDPConfig, c.SocketBuffer)
	}
	for id, a := range c.Peers {
		if a == nil || a.IP.To4() == nil {
			return fmt.Errorf("%w: peer %d address %v is not IPv4", ErrUDPConfig, id, a)
		}
	}
	return nil
}

func checkMulticastIP(ip net.IP) error {
	if ip4 := ip.To4(); ip4 == nil || !ip4.IsMulticast() {
		return fmt.Errorf("%w: %v is not an IPv4 multicast address", ErrUDPConfig, ip)
	}
	return nil
}

// UDPStats are cumulative counters of a UDPTransport.
type UDPStats struct {
	DatagramsSent uint64 // datagrams handed to the kernel
	BytesSent     uint64 // their total size, headers and tags included
	SendErrors    uint64 // datagrams the kernel refused
	WriteCalls    uint64 // send system calls (sendmmsg batches or single sends)

	DatagramsReceived uint64 // datagrams read from the sockets
	BytesReceived     uint64
	ReadCalls         uint64 // read system calls that returned data (recvmmsg batches)
	ReadErrors        uint64 // failed reads other than Close
	Delivered         uint64 // packets put on the Inbound channel
	SelfEchoes        uint64 // our own multicast datagrams, discarded

	// Dropped counts datagrams dropped, by reason (index WireDropReason).
	Dropped [NumWireDropReasons]uint64
}

// TotalDropped is the sum of Dropped over all reasons.
func (s UDPStats) TotalDropped() uint64 {
	var n uint64
	for _, v := range s.Dropped {
		n += v
	}
	return n
}

type udpCounters struct {
	sent, bytesSent, sendErrors, writeCalls    atomic.Uint64
	received, bytesReceived, readCalls, rdErrs atomic.Uint64
	delivered, selfEchoes                      atomic.Uint64
	dropped                                    [NumWireDropReasons]atomic.Uint64
}

// UDPTransport implements Transport over UDP. It is safe for concurrent use.
type UDPTransport struct {
	cfg    UDPConfig
	log    *zap.Logger
	now    func() time.Time
	uconn  *net.UDPConn
	upc    *ipv4.PacketConn
	mconn  *net.UDPConn // nil when multicast is off
	mpc    *ipv4.PacketConn
	mifi   *net.Interface // nil: kernel's choice
	in     chan Inbound
	wg     sync.WaitGroup
	closed atomic.Bool
	once   sync.Once

	book   sync.RWMutex
	peers  map[NodeID]*net.UDPAddr
	groups map[GroupID]*net.UDPAddr // send address of multicast groups
	joined map[GroupID]bool

	sendMu sync.Mutex // guards codec, buf, msgs
	codec  *Codec
	buf    []byte
	msgs   []ipv4.Message

	c udpCounters
}

var _ Transport = (*UDPTransport)(nil)

// NewUDPTransport opens the sockets, joins cfg.MulticastGroups and starts
// the reader goroutines. Call Close to release them.
func NewUDPTransport(cfg UDPConfig) (_ *UDPTransport, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	codec, err := NewCodec(cfg.Wire)
	if err != nil {
		return nil, err
	}
	t := &UDPTransport{
		cfg:    cfg,
		log:    cfg.Logger,
		now:    cfg.Now,
		in:     make(chan Inbound, cfg.InboundQueue),
		peers:  make(map[NodeID]*net.UDPAddr, len(cfg.Peers)),
		groups: make(map[GroupID]*net.UDPAddr),
		joined: make(map[GroupID]bool),
		codec:  codec,
		buf:    make([]byte, 0, codec.MaxDatagram()),
		msgs:   make([]ipv4.Message, cfg.BatchSize),
	}
	if t.log == nil {
		t.log = zap.NewNop()
	}
	if t.now == nil {
		t.now = time.Now
	}
	for id, a := range cfg.Peers {
		t.peers[id] = cloneUDPAddr(a)
	}
	defer func() {
		if err != nil {
			t.closeSockets()
		}
	}()

	laddr, err := net.ResolveUDPAddr("udp4", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("%w: ListenAddr %q: %v", ErrUDPConfig, cfg.ListenAddr, err)
	}
	if t.uconn, err = net.ListenUDP("udp4", laddr); err != nil {
		return nil, fmt.Errorf("ricochet/udp: listen %s: %w", cfg.ListenAddr, err)
	}
	t.upc = ipv4.NewPacketConn(t.uconn)
	setSocketBuffers(t.uconn, cfg.SocketBuffer)

	if cfg.MulticastPort != 0 {
		if err := t.openMulticast(); err != nil {
			return nil, err
		}
		for g, ip := range cfg.MulticastGroups {
			if err := t.JoinGroup(g, ip); err != nil {
				return nil, err
			}
		}
	}

	t.startReader(t.upc)
	if t.mpc != nil {
		t.startReader(t.mpc)
	}
	return t, nil
}

func (t *UDPTransport) openMulticast() error {
	cfg := t.cfg
	if cfg.MulticastInterface != "" {
		ifi, err := net.InterfaceByName(cfg.MulticastInterface)
		if err != nil {
			return fmt.Errorf("%w: interface %q: %v", ErrUDPMulticast, cfg.MulticastInterface, err)
		}
		if ifi.Flags&net.FlagMulticast == 0 {
			// Linux still delivers multicast on such an interface when it is
			// named explicitly (IP_MULTICAST_IF, as here); other systems may not.
			t.log.Warn("ricochet/udp: multicast interface lacks the MULTICAST flag; "+
				"if nothing arrives: ip link set <if> multicast on", zap.String("interface", ifi.Name))
		}
		t.mifi = ifi
	}
	// Sending side: options on the unicast socket.
	if t.mifi != nil {
		if err := t.upc.SetMulticastInterface(t.mifi); err != nil {
			return fmt.Errorf("%w: IP_MULTICAST_IF %s: %v", ErrUDPMulticast, t.mifi.Name, err)
		}
	}
	if err := t.upc.SetMulticastLoopback(cfg.MulticastLoopback); err != nil {
		return fmt.Errorf("%w: IP_MULTICAST_LOOP: %v", ErrUDPMulticast, err)
	}
	if err := t.upc.SetMulticastTTL(max(cfg.MulticastTTL, 1)); err != nil {
		return fmt.Errorf("%w: IP_MULTICAST_TTL: %v", ErrUDPMulticast, err)
	}
	// Receiving side: a shared-port socket.
	lc := multicastListenConfig()
	pc, err := lc.ListenPacket(bgContext, "udp4", fmt.Sprintf("0.0.0.0:%d", cfg.MulticastPort))
	if err != nil {
		return fmt.Errorf("%w: listen on port %d: %v", ErrUDPMulticast, cfg.MulticastPort, err)
	}
	t.mconn = pc.(*net.UDPConn)
	t.mpc = ipv4.NewPacketConn(t.mconn)
	setSocketBuffers(t.mconn, cfg.SocketBuffer)
	return nil
}

func setSocketBuffers(c *net.UDPConn, n int) {
	if n > 0 {
		_ = c.SetReadBuffer(n) // best effort: the kernel caps it
		_ = c.SetWriteBuffer(n)
	}
}

func cloneUDPAddr(a *net.UDPAddr) *net.UDPAddr {
	return &net.UDPAddr{IP: append(net.IP(nil), a.IP.To4()...), Port: a.Port}
}

// LocalAddr is the unicast socket's address (give it to the peers' address books).
func (t *UDPTransport) LocalAddr() *net.UDPAddr { return t.uconn.LocalAddr().(*net.UDPAddr) }

// MulticastEnabled reports whether the transport has a multicast socket.
func (t *UDPTransport) MulticastEnabled() bool { return t.mpc != nil }

// SetPeer adds or replaces the unicast address of a node.
func (t *UDPTransport) SetPeer(id NodeID, addr *net.UDPAddr) error {
	if addr == nil || addr.IP.To4() == nil {
		return fmt.Errorf("%w: peer %d address %v is not IPv4", ErrUDPConfig, id, addr)
	}
	t.book.Lock()
	t.peers[id] = cloneUDPAddr(addr)
	t.book.Unlock()
	return nil
}

// RemovePeer forgets a node's address.
func (t *UDPTransport) RemovePeer(id NodeID) {
	t.book.Lock()
	delete(t.peers, id)
	t.book.Unlock()
}

// Peer returns the address of a node, if known.
func (t *UDPTransport) Peer(id NodeID) (*net.UDPAddr, bool) {
	t.book.RLock()
	defer t.book.RUnlock()
	a, ok := t.peers[id]
	if !ok {
		return nil, false
	}
	return cloneUDPAddr(a), true
}

// SetGroupAddr makes Multicast(g, ...) send one datagram to ip:MulticastPort
// without joining g here (for a node that sends to a group it does not receive).
func (t *UDPTransport) SetGroupAddr(g GroupID, ip net.IP) error {
	if t.mpc == nil {
		return fmt.Errorf("%w: MulticastPort is 0", ErrUDPMulticast)
	}
	if err := checkMulticastIP(ip); err != nil {
		return err
	}
	t.book.Lock()
	t.groups[g] = &net.UDPAddr{IP: append(net.IP(nil), ip.To4()...), Port: t.cfg.MulticastPort}
	t.book.Unlock()
	return nil
}

// JoinGroup subscribes to group g's multicast address on the configured
// interface and sends g's multicast packets there. It fails (wrapping
// ErrUDPMulticast) when the kernel refuses the join, e.g. no multicast route
// or interface; the caller may fall back to unicast fan-out (the transport
// does that on its own for groups without an address).
func (t *UDPTransport) JoinGroup(g GroupID, ip net.IP) error {
	if t.mpc == nil {
		return fmt.Errorf("%w: MulticastPort is 0", ErrUDPMulticast)
	}
	if err := checkMulticastIP(ip); err != nil {
		return err
	}
	t.book.Lock()
	defer t.book.Unlock()
	if old, ok := t.groups[g]; ok && t.joined[g] && !old.IP.Equal(ip) {
		_ = t.mpc.LeaveGroup(t.mifi, &net.UDPAddr{IP: old.IP})
		delete(t.joined, g)
	}
	if !t.joined[g] {
		if err := t.mpc.JoinGroup(t.mifi, &net.UDPAddr{IP: ip}); err != nil {
			return fmt.Errorf("%w: join %v for group %d: %v", ErrUDPMulticast, ip, g, err)
		}
	}
	t.groups[g] = &net.UDPAddr{IP: append(net.IP(nil), ip.To4()...), Port: t.cfg.MulticastPort}
	t.joined[g] = true
	t.log.Debug("joined multicast group", zap.Uint32("group", uint32(g)), zap.Stringer("ip", ip))
	return nil
}

// LeaveGroup unsubscribes from g and forgets its address: Multicast(g, ...)
// falls back to unicast fan-out.
func (t *UDPTransport) LeaveGroup(g GroupID) error {
	t.book.Lock()
	defer t.book.Unlock()
	a, ok := t.groups[g]
	if !ok {
		return nil
	}
	delete(t.groups, g)
	if t.joined[g] {
		delete(t.joined, g)
		if err := t.mpc.LeaveGroup(t.mifi, &net.UDPAddr{IP: a.IP}); err != nil {
			return fmt.Errorf("%w: leave %v: %v", ErrUDPMulticast, a.IP, err)
		}
	}
	return nil
}

// Inbound yields authenticated packets until Close, then is closed.
func (t *UDPTransport) Inbound() <-chan Inbound { return t.in }

// Unicast sends p to one node.
func (t *UDPTransport) Unicast(to NodeID, p *Packet) error {
	if t.closed.Load() {
		return ErrUDPClosed
	}
	t.book.RLock()
	addr, ok := t.peers[to]
	t.book.RUnlock()
	if !ok {
		return fmt.Errorf("%w: node %d", ErrUDPUnknownPeer, to)
	}
	t.sendMu.Lock()
	defer t.sendMu.Unlock()
	if err := t.encode(p); err != nil {
		return err
	}
	return t.write1(addr)
}

// Multicast sends p to the members of g: one datagram to g's multicast
// address when it has one, else one per member by unicast fan-out (batched).
// Members without a known address are skipped, reported as one error
// wrapping ErrUDPUnknownPeer after the others were sent. Self is skipped.
func (t *UDPTransport) Multicast(g GroupID, members []NodeID, p *Packet) error {
	if t.closed.Load() {
		return ErrUDPClosed
	}
	t.sendMu.Lock()
	defer t.sendMu.Unlock()
	t.book.RLock()
	gaddr := t.groups[g]
	t.book.RUnlock()
	if gaddr != nil {
		if err := t.encode(p); err != nil {
			return err
		}
		return t.write1(gaddr)
	}
	if err := t.encode(p); err != nil {
		return err
	}
	var unknown []NodeID
	var firstErr error
	n := 0
	flush := func() {
		if n > 0 {
			if err := t.writeBatch(t.msgs[:n]); err != nil && firstErr == nil {
				firstErr = err
			}
			n = 0
		}
	}
	t.book.RLock()
	for _, m := range members {
		if m == t.cfg.Self {
			continue
		}
		a, ok := t.peers[m]
		if !ok {
			unknown = append(unknown, m)
			continue
		}
		t.msgs[n] = ipv4.Message{Buffers: [][]byte{t.buf}, Addr: a}
		if n++; n == len(t.msgs) {
			t.book.RUnlock()
			flush()
			t.book.RLock()
		}
	}
	t.book.RUnlock()
	flush()
	clear(t.msgs) // drop references to addresses and the buffer
	if firstErr != nil {
		return firstErr
	}
	if len(unknown) > 0 {
		return fmt.Errorf("%w: nodes %v of group %d", ErrUDPUnknownPeer, unknown, g)
	}
	return nil
}

// encode writes p into t.buf. Caller holds sendMu.
func (t *UDPTransport) encode(p *Packet) error {
	if p != nil && p.From != t.cfg.Self {
		// The transport stamps From: the engine may build packets without it.
		q := *p
		q.From = t.cfg.Self
		p = &q
	}
	b, err := t.codec.AppendEncode(t.buf[:0], p)
	if err != nil {
		return err
	}
	t.buf = b
	return nil
}

// write1 sends t.buf to one address. Caller holds sendMu.
func (t *UDPTransport) write1(addr *net.UDPAddr) error {
	t.c.writeCalls.Add(1)
	if _, err := t.uconn.WriteToUDP(t.buf, addr); err != nil {
		t.c.sendErrors.Add(1)
		return t.sendErr(err)
	}
	t.c.sent.Add(1)
	t.c.bytesSent.Add(uint64(len(t.buf)))
	return nil
}

// writeBatch sends every message, looping over partial sendmmsg results.
func (t *UDPTransport) writeBatch(ms []ipv4.Message) error {
	var firstErr error
	for len(ms) > 0 {
		t.c.writeCalls.Add(1)
		n, err := t.upc.WriteBatch(ms, 0)
		if n > 0 {
			t.c.sent.Add(uint64(n))
			t.c.bytesSent.Add(uint64(n * len(t.buf)))
			ms = ms[n:]
		}
		if err != nil {
			// Skip the datagram the kernel refused and carry on with the rest.
			t.c.sendErrors.Add(1)
			if firstErr == nil {
				firstErr = t.sendErr(err)
			}
			if errors.Is(err, net.ErrClosed) {
				return firstErr
			}
			if len(ms) > 0 {
				ms = ms[1:]
			}
		}
	}
	return firstErr
}

func (t *UDPTransport) sendErr(err error) error {
	if errors.Is(err, net.ErrClosed) || t.closed.Load() {
		return ErrUDPClosed
	}
	return fmt.Errorf("ricochet/udp: send: %w", err)
}

// startReader runs the receive loop of one socket.
func (t *UDPTransport) startReader(pc *ipv4.PacketConn) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		t.readLoop(pc)
	}()
}

func (t *UDPTransport) readLoop(pc *ipv4.PacketConn) {
	codec := t.codec.Clone()
	limit := codec.MaxDatagram()
	// One byte more than the limit: a datagram that fills the buffer is oversize.
	slot := limit + 1
	bufs := make([]byte, t.cfg.BatchSize*slot)
	ms := make([]ipv4.Message, t.cfg.BatchSize)
	for i := range ms {
		ms[i].Buffers = [][]byte{bufs[i*slot : (i+1)*slot]}
	}
	backoff := time.Millisecond
	for {
		n, err := pc.ReadBatch(ms, 0)
		if err != nil {
			if t.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			t.c.rdErrs.Add(1)
			t.log.Warn("ricochet/udp: read error", zap.Error(err))
			time.Sleep(backoff) // a persistent error must not spin a core
			backoff = min(2*backoff, 100*time.Millisecond)
			continue
		}
		backoff = time.Millisecond
		if n == 0 {
			continue
		}
		t.c.readCalls.Add(1)
		at := t.now()
		for i := 0; i < n; i++ {
			size := ms[i].N
			t.c.received.Add(1)
			t.c.bytesReceived.Add(uint64(size))
			if size > limit {
				t.c.dropped[WireDropOversize].Add(1)
				continue
			}
			p, err := codec.Decode(ms[i].Buffers[0][:size])
			if err != nil {
				t.c.dropped[WireDropReasonOf(err)].Add(1)
				continue
			}
			if p.From == t.cfg.Self {
				t.c.selfEchoes.Add(1)
				continue
			}
			select {
			case t.in <- Inbound{Packet: p, At: at}:
				t.c.delivered.Add(1)
			default:
				t.c.dropped[WireDropOverflow].Add(1)
			}
		}
		for i := 0; i < n; i++ {
			ms[i].Addr = nil // let the source addresses be collected
		}
	}
}

// Stats returns a snapshot of the counters.
func (t *UDPTransport) Stats() UDPStats {
	s := UDPStats{
		DatagramsSent:     t.c.sent.Load(),
		BytesSent:         t.c.bytesSent.Load(),
		SendErrors:        t.c.sendErrors.Load(),
		WriteCalls:        t.c.writeCalls.Load(),
		DatagramsReceived: t.c.received.Load(),
		BytesReceived:     t.c.bytesReceived.Load(),
		ReadCalls:         t.c.readCalls.Load(),
		ReadErrors:        t.c.rdErrs.Load(),
		Delivered:         t.c.delivered.Load(),
		SelfEchoes:        t.c.selfEchoes.Load(),
	}
	for i := range s.Dropped {
		s.Dropped[i] = t.c.dropped[i].Load()
	}
	return s
}

// Close stops the readers, closes the sockets and then the Inbound channel.
// It is idempotent; sends after Close fail with ErrUDPClosed.
func (t *UDPTransport) Close() error {
	t.once.Do(func() {
		t.closed.Store(true)
		t.closeSockets()
		t.wg.Wait()
		close(t.in)
	})
	return nil
}

func (t *UDPTransport) closeSockets() {
	if t.uconn != nil {
		_ = t.uconn.Close()
	}
	if t.mconn != nil {
		_ = t.mconn.Close()
	}
}
