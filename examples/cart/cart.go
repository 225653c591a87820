// Package cart is an example Tempest service: a shopping cart per user.
//
//	add    {"user","item","qty"}  -> {"items":{item:qty},"stable":bool}
//	remove {"user","item"}        -> {"items":{...},"stable":bool}
//	get    {"user"}               -> {"items":{...},"stable":bool}
//
// Each user's cart is one item of the replicated map "carts", so the
// operations on one cart are applied in the same order on every clone.
// Adding and removing are registered user ops rather than read-modify-write
// puts: a put would overwrite a concurrent add made on another clone, while
// an op is re-run in its place in the order on every replica, so concurrent
// adds to the same cart all count.
package cart

import (
	"maps"

	"github.com/tempestrt/tempest/actors"
	"github.com/tempestrt/tempest/collections"
)

// AddRequest adds qty of item to user's cart.
type AddRequest struct {
	User string `json:"user"`
	Item string `json:"item"`
	Qty  int64  `json:"qty"`
}

// RemoveRequest removes item from user's cart.
type RemoveRequest struct {
	User string `json:"user"`
	Item string `json:"item"`
}

// AddManyRequest adds to many carts in one update (bulk loading): all or
// nothing, at most MaxBatch adds.
type AddManyRequest struct {
	Adds []AddRequest `json:"adds"`
}

// AddManyResponse says how many adds the update made.
type AddManyResponse struct {
	Added int `json:"added"`
}

// GetRequest reads user's cart.
type GetRequest struct {
	User string `json:"user"`
}

// View is a cart as answered to clients. Stable is false while operations on
// the cart may still be reordered by updates in flight from other clones.
type View struct {
	Items  map[string]int64 `json:"items"`
	Stable bool             `json:"stable"`
}

// MaxQty bounds one add, MaxKeyLen user and item names, and MaxBatch the
// adds of one addmany.
const (
	MaxQty    = 1_000_000
	MaxKeyLen = 256
	MaxBatch  = 1000
)

type addArgs struct {
	Item string `json:"item"`
	Qty  int64  `json:"qty"`
}

type removeArgs struct {
	Item string `json:"item"`
}

// Service defines the cart service.
func Service() *actors.Service {
	return actors.NewService("cart", func(b *actors.Builder) {
		carts := collections.NewMap[string, map[string]int64](b.Store(), "carts")

		// User ops must be deterministic and must not modify cur in place.
		collections.RegisterOp(carts, "add", func(cur map[string]int64, _ bool, a addArgs) (map[string]int64, bool) {
			next := maps.Clone(cur)
			if next == nil {
				next = map[string]int64{}
			}
			next[a.Item] += a.Qty
			return next, true
		})
		collections.RegisterOp(carts, "remove", func(cur map[string]int64, exists bool, a removeArgs) (map[string]int64, bool) {
			if !exists {
				return nil, false
			}
			next := maps.Clone(cur)
			delete(next, a.Item)
			return next, len(next) > 0
		})

		view := func(user string) View {
			items, _ := carts.Get(user)
			if items == nil {
				items = map[string]int64{}
			}
			return View{Items: items, Stable: carts.Stable(user)}
		}

		actors.Update(b, "add", func(_ *actors.Ctx, r AddRequest) (View, error) {
			if err := checkNames(r.User, r.Item); err != nil {
				return View{}, err
			}
			if r.Qty <= 0 || r.Qty > MaxQty {
				return View{}, actors.BadRequest("qty must be in [1, %d], got %d", MaxQty, r.Qty)
			}
			if err := carts.Do(r.User, "add", addArgs{Item: r.Item, Qty: r.Qty}); err != nil {
				return View{}, err
			}
			return view(r.User), nil
		})
		// addmany validates every add before making any, so a bad one
		// fails the whole batch with nothing applied.
		actors.Update(b, "addmany", func(_ *actors.Ctx, r AddManyRequest) (AddManyResponse, error) {
			if len(r.Adds) == 0 || len(r.Adds) > MaxBatch {
				return AddManyResponse{}, actors.BadRequest("adds must hold 1..%d adds, got %d", MaxBatch, len(r.Adds))
			}
			for i, a := range r.Adds {
				if err := checkNames(a.User, a.Item); err != nil {
					return AddManyResponse{}, actors.BadRequest("adds[%d]: %v", i, err)
				}
				if a.Qty <= 0 || a.Qty > MaxQty {
					return AddManyResponse{}, actors.BadRequest("adds[%d]: qty must be in [1, %d], got %d", i, MaxQty, a.Qty)
				}
			}
			for _, a := range r.Adds {
				if err := carts.Do(a.User, "add", addArgs{Item: a.Item, Qty: a.Qty}); err != nil {
					return AddManyResponse{}, err
				}
			}
			return AddManyResponse{Added: len(r.Adds)}, nil
		})
		actors.Update(b, "remove", func(_ *actors.Ctx, r RemoveRequest) (View, error) {
			if err := checkNames(r.User, r.Item); err != nil {
				return View{}, err
			}
			if err := carts.Do(r.User, "remove", removeArgs{Item: r.Item}); err != nil {
				return View{}, err
			}
			return view(r.User), nil
		})
		actors.Query(b, "get", func(_ *actors.Ctx, r GetRequest) (View, error) {
			if r.User == "" || len(r.User) > MaxKeyLen {
				return View{}, actors.BadRequest("user must be 1..%d bytes", MaxKeyLen)
			}
			return view(r.User), nil
		})
	})
}

func checkNames(user, item string) error {
	if user == "" || len(user) > MaxKeyLen {
		return actors.BadRequest("user must be 1..%d bytes", MaxKeyLen)
	}
	if item == "" || len(item) > MaxKeyLen {
		return actors.BadRequest("item must be 1..%d bytes", MaxKeyLen)
	}
	return nil
}
