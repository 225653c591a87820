package schedq

// rankSet is an order-statistics set of queued items, ordered like
// byDeadline (deadline, then push order), answering "how many items have a
// deadline at or before D" in O(log n). Push uses it for backlog-aware
// admission: under EDF, a newcomer runs after every queued request with an
// earlier (or equal, pushed earlier) deadline, so its expected start is
// now + sum over methods of count(deadline <= D) * estimate. Keeping counts
// per method, rather than a running sum of estimates, keeps the answer exact
// when Observe changes an estimate.
//
// It is a treap with subtree sizes. Priorities come from a hash of the
// item's push sequence number, so the shape (and thus every cost) is a pure
// function of the operations: no hidden randomness in a pure core.
type rankSet struct {
	root *item
}

// rankLinks are an item's treap fields (embedded in item: no allocation
// and one pointer less per visited node).
type rankLinks struct {
	prio        uint64
	size        int
	left, right *item
}

func sz(n *item) int {
	if n == nil {
		return 0
	}
	return n.size
}

func fix(n *item) { n.size = 1 + sz(n.left) + sz(n.right) }

// mix is splitmix64's finalizer: a bijective hash of the sequence number.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func (s *rankSet) len() int { return sz(s.root) }

// split divides t into the items ordered before it (l) and the rest (r).
func split(t, it *item) (l, r *item) {
	if t == nil {
		return nil, nil
	}
	if byDeadline(t, it) {
		t.right, r = split(t.right, it)
		fix(t)
		return t, r
	}
	l, t.left = split(t.left, it)
	fix(t)
	return l, t
}

func merge(l, r *item) *item {
	switch {
	case l == nil:
		return r
	case r == nil:
		return l
	case l.prio > r.prio:
		l.right = merge(l.right, r)
		fix(l)
		return l
	default:
		r.left = merge(l, r.left)
		fix(r)
		return r
	}
}

func (s *rankSet) add(it *item) {
	it.rankLinks = rankLinks{prio: mix(it.seq), size: 1}
	l, r := split(s.root, it)
	s.root = merge(merge(l, it), r)
}

// remove deletes it; it must be in the set.
func (s *rankSet) remove(it *item) {
	s.root = removeNode(s.root, it)
	it.left, it.right = nil, nil
}

func removeNode(t, it *item) *item {
	if t == nil {
		panic("schedq: rankSet.remove of an item not in the set")
	}
	switch {
	case t == it:
		return merge(t.left, t.right)
	case byDeadline(it, t):
		t.left = removeNode(t.left, it)
	default:
		t.right = removeNode(t.right, it)
	}
	fix(t)
	return t
}

// countBefore returns how many items would run before it under EDF: those
// with an earlier deadline, or the same deadline and an earlier push.
func (s *rankSet) countBefore(it *item) int {
	n := 0
	for t := s.root; t != nil; {
		if byDeadline(t, it) {
			n += sz(t.left) + 1
			t = t.right
		} else {
			t = t.left
		}
	}
	return n
}
