package schedq

import "container/heap"

// ixheap is a container/heap of items that records each item's position in
// one of the item's index fields, so an item can be removed from the middle
// in O(log n) when it moves between heaps.
type ixheap struct {
	items []*item
	less  func(a, b *item) bool
	pos   func(*item) *int
}

func (h *ixheap) Len() int           { return len(h.items) }
func (h *ixheap) Less(i, j int) bool { return h.less(h.items[i], h.items[j]) }
func (h *ixheap) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	*h.pos(h.items[i]) = i
	*h.pos(h.items[j]) = j
}

func (h *ixheap) Push(x any) {
	it := x.(*item)
	*h.pos(it) = len(h.items)
	h.items = append(h.items, it)
}

func (h *ixheap) Pop() any {
	n := len(h.items) - 1
	it := h.items[n]
	h.items[n] = nil
	h.items = h.items[:n]
	*h.pos(it) = -1
	return it
}

func (h *ixheap) top() *item {
	if len(h.items) == 0 {
		return nil
	}
	return h.items[0]
}

func (h *ixheap) add(it *item)    { heap.Push(h, it) }
func (h *ixheap) remove(it *item) { heap.Remove(h, *h.pos(it)) }
func (h *ixheap) popTop() *item   { return heap.Pop(h).(*item) }
