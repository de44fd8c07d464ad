// Package bandwidth shapes a host's network bandwidth per stage, with tc's
// htb set through netlink (no tc binary): each stage's traffic gets a class
// with a guaranteed rate (its floor) and a ceiling it may borrow up to, so
// one stage's burst never takes another's floor.
//
// Sent traffic is shaped on Options.Device; received traffic, when
// Options.Ingress is set, on an ifb device that Device's ingress is
// redirected to (tc's ingress qdisc with a mirred action). The tree on each:
//
//	1:  htb, unclassified traffic to 1:2
//	└── 1:1     rate = ceil = Options.Ceiling
//	    ├── 1:2   traffic of no stage: what the floors leave (at least 8 kbit/s), up to Ceiling
//	    └── 1:16+i  Options.Stages[i]: its floor, up to its Ceiling
//
// A stage's traffic is recognised by u32 filters on IPv4 headers: its
// ports (source or destination) and its peers' addresses. IPv6 traffic and
// IPv4 packets with header options go to the class of no stage.
//
// Targets (Kind "bandwidth") name a stage. Desired.Resources' NetBytes is
// the stage's floor in bytes/s, in each direction; it moves toward the
// desired floor by at most StepShare of Ceiling per step, and the desired
// floors are kept in StateDir so a restarted shaper reconciles to them.
package bandwidth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"

	"github.com/headstart-dev/headstart/controlplane/shapers/internal/state"
)

// Kind is the target kind this shaper serves.
const Kind = "bandwidth"

// Options configure a bandwidth shaper.
type Options struct {
	// Device is the network interface whose traffic is shaped. Required.
	Device string
	// Ceiling is the rate, in bytes/s, that all the traffic of Device shares
	// in each direction: the link's usable rate. Required.
	Ceiling float64
	// Ingress shapes received traffic too, through an ifb device.
	Ingress bool
	// IFB names the ifb device (default "ifb-" + Device, cut to 15 bytes).
	IFB string
	// Stages are the classes; a target names one. At least one.
	Stages []Stage
	// StepShare: a floor moves by at most this share of Ceiling per step
	// (default 0.25).
	StepShare float64
	// StepInterval between steps (default 1s).
	StepInterval time.Duration
	// StateDir keeps the desired floors; "" keeps them in memory only.
	StateDir string
	// NetNS is the network namespace of Device, as a file (e.g.
	// /run/netns/NAME or /proc/PID/ns/net); default the shaper's own.
	NetNS string
	// Log receives every change and why (default: discarded).
	Log io.Writer
}

// Stage is one stage's traffic.
type Stage struct {
	// Name of the stage, the targets' name.
	Name string
	// Ports whose TCP or UDP traffic is the stage's, as source or destination.
	Ports []uint16
	// Peers are addresses (CIDRs, or single IPv4 addresses) whose traffic
	// with this host is the stage's.
	Peers []string
	// Ceiling the stage may borrow up to, bytes/s (default Options.Ceiling).
	Ceiling float64
}

const (
	defaultStepShare    = 0.25
	defaultStepInterval = time.Second
	// minRate is the guaranteed rate of a class with no floor, bytes/s
	// (8 kbit/s): htb needs one; the class borrows the rest.
	minRate = 1000
	// Class minors: 1:1 the link, 1:2 traffic of no stage, 1:16+i stage i.
	linkMinor, otherMinor, firstStageMinor = 1, 2, 16
	// filterPrio of the shaper's filters.
	filterPrio = 10
)

var namePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

func validName(name string) bool { return namePattern.MatchString(name) && name != "." && name != ".." }

// Validate reports every option the shaper cannot work with.
func (o Options) Validate() error {
	var errs []error
	if o.Device == "" || len(o.Device) > 15 || strings.ContainsAny(o.Device, "/ ") {
		errs = append(errs, fmt.Errorf("device %q: want a network interface's name", o.Device))
	}
	if !(o.Ceiling >= minRate && o.Ceiling < math.MaxUint32) {
		errs = append(errs, fmt.Errorf("ceiling %v bytes/s: want from %d to %d", o.Ceiling, minRate, uint64(math.MaxUint32)))
	}
	if o.IFB != "" && (len(o.IFB) > 15 || strings.ContainsAny(o.IFB, "/ ")) {
		errs = append(errs, fmt.Errorf("ifb %q: want a network interface's name", o.IFB))
	}
	if len(o.Stages) == 0 {
		errs = append(errs, errors.New("no stages: name each stage's traffic"))
	}
	if len(o.Stages) > 0xffff-firstStageMinor {
		errs = append(errs, fmt.Errorf("%d stages: at most %d", len(o.Stages), 0xffff-firstStageMinor))
	}
	seen := map[string]bool{}
	for i, st := range o.Stages {
		if !validName(st.Name) || seen[st.Name] {
			errs = append(errs, fmt.Errorf("stages[%d]: name %q: want a distinct name of letters, digits, '.', '_' and '-'", i, st.Name))
		}
		seen[st.Name] = true
		if len(st.Ports) == 0 && len(st.Peers) == 0 {
			errs = append(errs, fmt.Errorf("stages[%d] (%s): no ports or peers: its traffic cannot be told apart", i, st.Name))
		}
		for _, p := range st.Peers {
			if _, err := parsePeer(p); err != nil {
				errs = append(errs, fmt.Errorf("stages[%d] (%s): %w", i, st.Name, err))
			}
		}
		if st.Ceiling != 0 && !(st.Ceiling >= minRate && st.Ceiling <= o.Ceiling) {
			errs = append(errs, fmt.Errorf("stages[%d] (%s): ceiling %v bytes/s: want from %d to the link's %v", i, st.Name, st.Ceiling, minRate, o.Ceiling))
		}
	}
	if !(o.StepShare >= 0 && o.StepShare <= 1) {
		errs = append(errs, fmt.Errorf("step share %v: want more than 0, at most 1", o.StepShare))
	}
	if o.StepInterval < 0 {
		errs = append(errs, fmt.Errorf("step interval %v is negative", o.StepInterval))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bandwidth: %w", err)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.StepShare == 0 {
		o.StepShare = defaultStepShare
	}
	if o.StepInterval == 0 {
		o.StepInterval = defaultStepInterval
	}
	if o.IFB == "" {
		o.IFB = "ifb-" + o.Device
		o.IFB = o.IFB[:min(len(o.IFB), 15)]
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	for i := range o.Stages {
		if o.Stages[i].Ceiling == 0 {
			o.Stages[i].Ceiling = o.Ceiling
		}
	}
	return o
}

func parsePeer(p string) (*net.IPNet, error) {
	if !strings.Contains(p, "/") {
		p += "/32"
	}
	ip, n, err := net.ParseCIDR(p)
	if err != nil || ip.To4() == nil {
		return nil, fmt.Errorf("peer %q: want an IPv4 address or CIDR", p)
	}
	return n, nil
}

// Shaper shapes the bandwidth of one network device's stages.
type Shaper struct {
	opts Options
	h    *netlink.Handle

	mu      sync.Mutex
	desired map[string]*target // by stage
	stop    chan struct{}
	done    chan struct{}
}

type target struct {
	Floor  float64 `json:"floor"` // bytes/s
	Reason string  `json:"reason"`
}

// New sets up Device's classes and filters (and the ifb's, with Ingress),
// keeping the rates of classes that exist, and reconciles to the desired
// floors kept in StateDir, if any. It needs CAP_NET_ADMIN.
func New(opts Options) (*Shaper, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	h, err := handle(opts.NetNS)
	if err != nil {
		return nil, err
	}
	s := &Shaper{opts: opts, h: h, desired: map[string]*target{}, stop: make(chan struct{}), done: make(chan struct{})}
	err = state.Dir(opts.StateDir).Load(validName, func(name string, b []byte) error {
		if s.stage(name) < 0 {
			return nil // a stage no longer configured
		}
		t := &target{}
		s.desired[name] = t
		return json.Unmarshal(b, t)
	})
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("bandwidth: %w", err)
	}
	if err := s.setup(); err != nil {
		h.Close()
		return nil, err
	}
	go s.run()
	return s, nil
}

func handle(path string) (*netlink.Handle, error) {
	if path == "" {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("bandwidth: netlink: %w", err)
		}
		return h, nil
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("bandwidth: network namespace %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("bandwidth: netlink in %s: %w", path, err)
	}
	return h, nil
}

func (s *Shaper) stage(name string) int {
	return slices.IndexFunc(s.opts.Stages, func(st Stage) bool { return st.Name == name })
}

// direction is one shaped device: Device for sent traffic, the ifb for received.
type direction struct {
	link     netlink.Link
	received bool
}

func (d direction) String() string {
	if d.received {
		return "received on " + d.link.Attrs().Name
	}
	return "sent on " + d.link.Attrs().Name
}

func (s *Shaper) directions() ([]direction, error) {
	dev, err := s.h.LinkByName(s.opts.Device)
	if err != nil {
		return nil, fmt.Errorf("bandwidth: device %s: %w", s.opts.Device, err)
	}
	dirs := []direction{{link: dev}}
	if s.opts.Ingress {
		ifb, err := s.h.LinkByName(s.opts.IFB)
		if err != nil {
			return nil, fmt.Errorf("bandwidth: ifb %s: %w", s.opts.IFB, err)
		}
		dirs = append(dirs, direction{link: ifb, received: true})
	}
	return dirs, nil
}

// setup makes what is missing of the qdiscs, classes and filters, and
// replaces filters that differ from the stages'.
func (s *Shaper) setup() error {
	if s.opts.Ingress {
		if err := s.setupIngress(); err != nil {
			return fmt.Errorf("bandwidth: ingress: %w", err)
		}
	}
	dirs, err := s.directions()
	if err != nil {
		return err
	}
	for _, d := range dirs {
		if err := s.setupTree(d); err != nil {
			return fmt.Errorf("bandwidth: %s: %w", d, err)
		}
	}
	return nil
}

// setupIngress makes the ifb device and redirects Device's ingress to it.
func (s *Shaper) setupIngress() error {
	ifb, err := s.h.LinkByName(s.opts.IFB)
	if err != nil {
		if err := s.h.LinkAdd(&netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: s.opts.IFB, TxQLen: 1000}}); err != nil {
			return fmt.Errorf("add %s (is the ifb module loaded?): %w", s.opts.IFB, err)
		}
		if ifb, err = s.h.LinkByName(s.opts.IFB); err != nil {
			return err
		}
	}
	if err := s.h.LinkSetUp(ifb); err != nil {
		return fmt.Errorf("set %s up: %w", s.opts.IFB, err)
	}
	dev, err := s.h.LinkByName(s.opts.Device)
	if err != nil {
		return fmt.Errorf("device %s: %w", s.opts.Device, err)
	}
	ingress := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: dev.Attrs().Index,
		Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_INGRESS}}
	if err := s.h.QdiscReplace(ingress); err != nil {
		return fmt.Errorf("ingress qdisc on %s: %w", s.opts.Device, err)
	}
	parent := netlink.MakeHandle(0xffff, 0)
	filters, err := s.h.FilterList(dev, parent)
	if err != nil {
		return err
	}
	for _, f := range filters {
		if u, ok := f.(*netlink.U32); ok && u.Priority == filterPrio && slices.ContainsFunc(u.Actions, func(a netlink.Action) bool {
			m, ok := a.(*netlink.MirredAction)
			return ok && m.Ifindex == ifb.Attrs().Index
		}) {
			return nil // already redirected
		}
	}
	redirect := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: dev.Attrs().Index, Parent: parent, Priority: filterPrio, Protocol: unixETHPALL},
		Sel:         &netlink.TcU32Sel{Flags: nl.TC_U32_TERMINAL, Keys: []netlink.TcU32Key{{}}}, // match every packet
		Actions:     []netlink.Action{netlink.NewMirredAction(ifb.Attrs().Index)},
	}
	if err := s.h.FilterAdd(redirect); err != nil {
		return fmt.Errorf("redirect %s's ingress to %s: %w", s.opts.Device, s.opts.IFB, err)
	}
	return nil
}

// unixETHPALL and unixETHPIP are ETH_P_ALL and ETH_P_IP in the filters'
// protocol field, which netlink sends in network byte order.
const (
	unixETHPALL = 0x0003
	unixETHPIP  = 0x0800
)

func (s *Shaper) setupTree(d direction) error {
	idx := d.link.Attrs().Index
	qdiscs, err := s.h.QdiscList(d.link)
	if err != nil {
		return err
	}
	root := slices.IndexFunc(qdiscs, func(q netlink.Qdisc) bool {
		h, ok := q.(*netlink.Htb)
		return ok && h.Parent == netlink.HANDLE_ROOT && h.Handle == netlink.MakeHandle(1, 0) && h.Defcls == otherMinor
	})
	if root < 0 {
		htb := netlink.NewHtb(netlink.QdiscAttrs{LinkIndex: idx, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT})
		htb.Defcls = otherMinor
		if err := s.h.QdiscReplace(htb); err != nil {
			return fmt.Errorf("htb qdisc: %w", err)
		}
	}
	have, err := s.classes(d)
	if err != nil {
		return err
	}
	if err := s.setClass(d, linkMinor, netlink.HANDLE_ROOT, s.opts.Ceiling, s.opts.Ceiling, have); err != nil {
		return err
	}
	floors := make([]float64, len(s.opts.Stages))
	for i := range s.opts.Stages {
		floors[i] = max(have[classID(firstStageMinor+i)].Rate, minRate)
	}
	if err := s.setClasses(d, floors, have); err != nil {
		return err
	}
	return s.setupFilters(d)
}

type class struct{ Rate, Ceil float64 }

func classID(minor int) uint32 { return netlink.MakeHandle(1, uint16(minor)) }

// classes reads d's htb classes by handle, rates in bytes/s.
func (s *Shaper) classes(d direction) (map[uint32]class, error) {
	list, err := s.h.ClassList(d.link, 0)
	if err != nil {
		return nil, fmt.Errorf("read classes: %w", err)
	}
	out := map[uint32]class{}
	for _, c := range list {
		if h, ok := c.(*netlink.HtbClass); ok {
			out[h.Handle] = class{Rate: float64(h.Rate), Ceil: float64(h.Ceil)}
		}
	}
	return out, nil
}

// setClass writes class 1:minor unless it already has rate and ceil.
func (s *Shaper) setClass(d direction, minor int, parent uint32, rate, ceil float64, have map[uint32]class) error {
	rate, ceil = math.Round(rate), math.Round(ceil)
	if c, ok := have[classID(minor)]; ok && c.Rate == rate && c.Ceil == ceil {
		return nil
	}
	c := netlink.NewHtbClass(netlink.ClassAttrs{LinkIndex: d.link.Attrs().Index, Parent: parent, Handle: classID(minor)},
		netlink.HtbClassAttrs{Rate: uint64(rate) * 8, Ceil: uint64(ceil) * 8})
	if err := s.h.ClassReplace(c); err != nil {
		return fmt.Errorf("class 1:%x: %w", minor, err)
	}
	have[classID(minor)] = class{Rate: rate, Ceil: ceil}
	return nil
}

// setClasses gives the stages floors and the traffic of no stage what they
// leave, in the order that never guarantees more than the link's ceiling
// for longer than it takes to write them.
func (s *Shaper) setClasses(d direction, floors []float64, have map[uint32]class) error {
	var before, after float64
	for i, f := range floors {
		before += have[classID(firstStageMinor+i)].Rate
		after += f
	}
	parent := classID(linkMinor)
	other := func() error {
		return s.setClass(d, otherMinor, parent, max(s.opts.Ceiling-after, minRate), s.opts.Ceiling, have)
	}
	if after > before { // make room first
		if err := other(); err != nil {
			return err
		}
	}
	for i, f := range floors {
		if err := s.setClass(d, firstStageMinor+i, parent, f, s.opts.Stages[i].Ceiling, have); err != nil {
			return err
		}
	}
	return other()
}

// setupFilters classifies each stage's traffic into its class; filters
// that differ from the stages' are replaced.
func (s *Shaper) setupFilters(d direction) error {
	idx := d.link.Attrs().Index
	parent := netlink.MakeHandle(1, 0)
	var want []*netlink.U32
	key := func(minor int, k netlink.TcU32Key) {
		want = append(want, &netlink.U32{
			FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: parent, Priority: filterPrio, Protocol: unixETHPIP},
			ClassId:     classID(minor),
			Sel:         &netlink.TcU32Sel{Flags: nl.TC_U32_TERMINAL, Keys: []netlink.TcU32Key{k}},
		})
	}
	for i, st := range s.opts.Stages {
		for _, p := range st.Ports {
			key(firstStageMinor+i, netlink.TcU32Key{Off: 20, Mask: 0xffff0000, Val: uint32(p) << 16}) // source port
			key(firstStageMinor+i, netlink.TcU32Key{Off: 20, Mask: 0x0000ffff, Val: uint32(p)})       // destination port
		}
		for _, p := range st.Peers {
			n, _ := parsePeer(p)
			off := int32(16) // the destination of what is sent
			if d.received {
				off = 12 // the source of what is received
			}
			ip := n.IP.To4()
			key(firstStageMinor+i, netlink.TcU32Key{Off: off, Mask: uint32FromBytes(n.Mask), Val: uint32FromBytes(ip)})
		}
	}
	have, err := s.h.FilterList(d.link, parent)
	if err != nil {
		return fmt.Errorf("read filters: %w", err)
	}
	if slices.Equal(signatures(have), signatures(want)) {
		return nil
	}
	if len(have) > 0 {
		all := &netlink.U32{FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: parent, Priority: filterPrio, Protocol: unixETHPIP}}
		if err := s.h.FilterDel(all); err != nil && !errors.Is(err, errNoEntry) {
			return fmt.Errorf("clear filters: %w", err)
		}
	}
	for _, f := range want {
		if err := s.h.FilterAdd(f); err != nil {
			return fmt.Errorf("filter to %s: %w", netlink.HandleStr(f.ClassId), err)
		}
	}
	fmt.Fprintf(s.opts.Log, "bandwidth: %s: %d filters set for %d stages\n", d, len(want), len(s.opts.Stages))
	return nil
}

func uint32FromBytes(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// signatures are filters as sorted "class key…" lines, to compare sets.
func signatures[F netlink.Filter](fs []F) []string {
	var out []string
	for _, f := range fs {
		u, ok := any(f).(*netlink.U32)
		if !ok || u.Sel == nil || u.Priority != filterPrio {
			continue
		}
		sig := netlink.HandleStr(u.ClassId)
		for _, k := range u.Sel.Keys {
			sig += fmt.Sprintf(" %d/%08x/%08x", k.Off, k.Mask, k.Val)
		}
		out = append(out, sig)
	}
	slices.Sort(out)
	return out
}
