// Package chat is an example Tempest service: one chat room whose members
// are a replicated Set and whose messages are a replicated List.
//
//	join    {"user"}              -> {"members":[...]}
//	leave   {"user"}              -> {"members":[...]}
//	post    {"user","text"}       -> {"index":n}        (only members may post)
//	history {"since","limit"}     -> {"messages":[...],"members":[...],"stable":bool}
//
// The list is a single item, so every clone shows the messages in the same
// order once they are stable; a message posted on one clone may appear
// before or after a concurrent message from another clone, but in the same
// place everywhere.
package chat

import (
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tempestrt/tempest/actors"
	"github.com/tempestrt/tempest/collections"
)

// Message is one posted message.
type Message struct {
	User string `json:"user"`
	Text string `json:"text"`
	AtMs int64  `json:"at_ms"` // the posting clone's clock, for display only
}

// UserRequest names a user (join, leave).
type UserRequest struct {
	User string `json:"user"`
}

// PostRequest posts text as user.
type PostRequest struct {
	User string `json:"user"`
	Text string `json:"text"`
}

// HistoryRequest pages through messages: Since is the first index, Limit the
// page size (default 50, at most 500).
type HistoryRequest struct {
	Since int `json:"since"`
	Limit int `json:"limit"`
}

// Members is the member list.
type Members struct {
	Members []string `json:"members"`
}

// Posted tells where a message landed (tentatively: a concurrent post from
// another clone may still be ordered before it).
type Posted struct {
	Index int `json:"index"`
}

// History is a page of messages.
type History struct {
	Messages []Message `json:"messages"`
	Members  []string  `json:"members"`
	Total    int       `json:"total"`
	Stable   bool      `json:"stable"`
}

// Limits on input.
const (
	MaxUserLen = 64
	MaxTextLen = 4096
)

// Service defines the chat service.
func Service() *actors.Service {
	return actors.NewService("chat", func(b *actors.Builder) {
		members := collections.NewSet[string](b.Store(), "members")
		messages := collections.NewList[Message](b.Store(), "messages")

		memberList := func() []string {
			out := []string{}
			for m := range members.All() {
				out = append(out, m)
			}
			return out
		}

		actors.Update(b, "join", func(_ *actors.Ctx, r UserRequest) (Members, error) {
			if err := checkUser(r.User); err != nil {
				return Members{}, err
			}
			if err := members.Add(r.User); err != nil {
				return Members{}, err
			}
			return Members{Members: memberList()}, nil
		})
		actors.Update(b, "leave", func(_ *actors.Ctx, r UserRequest) (Members, error) {
			if err := checkUser(r.User); err != nil {
				return Members{}, err
			}
			if err := members.Remove(r.User); err != nil {
				return Members{}, err
			}
			return Members{Members: memberList()}, nil
		})
		actors.Update(b, "post", func(_ *actors.Ctx, r PostRequest) (Posted, error) {
			if err := checkUser(r.User); err != nil {
				return Posted{}, err
			}
			if strings.TrimSpace(r.Text) == "" || len(r.Text) > MaxTextLen || !utf8.ValidString(r.Text) {
				return Posted{}, actors.BadRequest("text must be 1..%d bytes of UTF-8", MaxTextLen)
			}
			if !members.Contains(r.User) {
				return Posted{}, actors.Errorf(403, "not_a_member", "%s has not joined the room", r.User)
			}
			if err := messages.Append(Message{User: r.User, Text: r.Text, AtMs: time.Now().UnixMilli()}); err != nil {
				return Posted{}, err
			}
			return Posted{Index: messages.Len() - 1}, nil
		},
			// The membership check must see a join acknowledged on another
			// clone just before: hold the post until this replica is stable
			// up to the post's arrival (bounded by its deadline).
			actors.WithHoldBack())
		actors.Query(b, "history", func(_ *actors.Ctx, r HistoryRequest) (History, error) {
			if r.Limit == 0 {
				r.Limit = 50
			}
			if r.Since < 0 || r.Limit < 0 || r.Limit > 500 {
				return History{}, actors.BadRequest("since must be >= 0 and limit in [1,500]")
			}
			h := History{Messages: []Message{}, Members: memberList(), Total: messages.Len(), Stable: messages.Stable()}
			for i := r.Since; i < messages.Len() && len(h.Messages) < r.Limit; i++ {
				m, _ := messages.Get(i)
				h.Messages = append(h.Messages, m)
			}
			return h, nil
		})
	})
}

func checkUser(u string) error {
	if u == "" || len(u) > MaxUserLen || !utf8.ValidString(u) {
		return actors.BadRequest("user must be 1..%d bytes of UTF-8", MaxUserLen)
	}
	return nil
}
