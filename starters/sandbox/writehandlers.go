package sandbox

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// notFound is the 404 of a customer id no customer has.
func notFound(id string) reply {
	return failure(http.StatusNotFound, ErrorTypeNotFound, "", "no customer %s", id).reply()
}

// createCustomer is POST /v1/customers of a parsed body.
func (s *Server) createCustomer(doc map[string]json.RawMessage) reply {
	c, f := s.insertCustomer(doc)
	if f != nil {
		return f.reply()
	}
	s.notify("customer.created", c)
	return customerReply(http.StatusCreated, c)
}

// ifMatchOK is the strong comparison If-Match uses (RFC 9110 13.1.1): a
// weak tag never matches.
func ifMatchOK(header, etag string) bool {
	for c := range strings.SplitSeq(header, ",") {
		if c = strings.TrimSpace(c); c == "*" || c == etag {
			return true
		}
	}
	return false
}

// precondition is the 412 of an If-Match that is not the customer's ETag,
// or nil.
func precondition(ifMatch string, c *Customer) *reply {
	if ifMatch == "" || ifMatchOK(ifMatch, c.ETag()) {
		return nil
	}
	rep := failure(http.StatusPreconditionFailed, ErrorTypePreconditionFailed, "",
		"If-Match %s does not match the current ETag %s of customer %s: read it again", ifMatch, c.ETag(), c.ID).reply()
	rep.etag = c.ETag()
	return &rep
}

// updateCustomer is PUT (replace) or PATCH (merge) /v1/customers/{id}.
func (s *Server) updateCustomer(id string, body []byte, ifMatch string, merge bool) reply {
	patch, f := parseObject(body)
	if f != nil {
		return f.reply()
	}
	cur, ok := s.ws.byID[id]
	if !ok {
		return notFound(id)
	}
	if rep := precondition(ifMatch, cur); rep != nil {
		return *rep
	}
	doc := patch
	if merge {
		doc = mergePatch(cur.document(), patch)
	}
	c, e := customerFromDoc(doc, modeReplace, id)
	if e != nil {
		return (&apiFailure{status: http.StatusUnprocessableEntity, err: *e}).reply()
	}
	if f := s.emailTaken(c.Email, id); f != nil {
		return f.reply()
	}
	delete(s.ws.byEmail, normEmail(cur.Email))
	s.ws.byEmail[normEmail(c.Email)] = id
	c.ID, c.Version, c.CreatedAt = id, cur.Version+1, cur.CreatedAt
	c.UpdatedAt = formatMilli(s.opts.Now().UnixMilli())
	*cur = c.clone()
	s.notify("customer.updated", c)
	return customerReply(http.StatusOK, c)
}

// deleteCustomer is DELETE /v1/customers/{id}.
func (s *Server) deleteCustomer(id, ifMatch string) reply {
	cur, ok := s.ws.byID[id]
	if !ok {
		return notFound(id)
	}
	if rep := precondition(ifMatch, cur); rep != nil {
		return *rep
	}
	s.removeCustomer(id)
	s.ws.deleted[id] = DeletedCustomer{ID: id, Deleted: true, Version: cur.Version + 1, UpdatedAt: formatMilli(s.opts.Now().UnixMilli())}
	s.notify("customer.deleted", s.ws.deleted[id])
	return reply{status: http.StatusNoContent}
}

// getCustomer is GET /v1/customers/{id}.
func (s *Server) getCustomer(id string) reply {
	c, ok := s.ws.byID[id]
	if !ok {
		return notFound(id)
	}
	return customerReply(http.StatusOK, *c)
}

// customerList is the answer to GET /v1/customers.
type customerList struct {
	Data    []Customer `json:"data"`
	HasMore bool       `json:"has_more"`
}

// listCustomers is GET /v1/customers?email=&external_ref=&limit=&starting_after=:
// customers by id, those with the email (without regard to case) and the
// external_ref when given, limit of them (default 10, at most 100) after
// the id starting_after.
func (s *Server) listCustomers(q url.Values) reply {
	if q.Has("updated_since") {
		return s.listChanges(q)
	}
	limit, err := intParam(q, "limit", DefaultCustomerListLimit, 1)
	if err != nil {
		return failure(http.StatusBadRequest, ErrorTypeInvalidRequest, "limit", "%v", err).reply()
	}
	limit = min(limit, MaxCustomerListLimit)
	after := q.Get("starting_after")
	if after != "" && !validCustomerID(after) {
		return failure(http.StatusBadRequest, ErrorTypeInvalidRequest, "starting_after",
			"starting_after: %q is not a customer id", after).reply()
	}
	ids := s.ws.ids
	if email := q.Get("email"); email != "" {
		ids = nil
		if id, ok := s.ws.byEmail[normEmail(email)]; ok {
			ids = []string{id}
		}
	}
	start, found := slices.BinarySearch(ids, after)
	if found {
		start++
	}
	ref := q.Get("external_ref")
	list := customerList{Data: []Customer{}}
	for _, id := range ids[start:] {
		c := s.ws.byID[id]
		if ref != "" && c.ExternalRef != ref {
			continue
		}
		if len(list.Data) == limit {
			list.HasMore = true
			break
		}
		list.Data = append(list.Data, *c)
	}
	return jsonReply(http.StatusOK, list)
}

// acceptNotification is POST /v1/notifications.
func (s *Server) acceptNotification(body []byte) reply {
	if f := notJSON(body, "a JSON value"); f != nil {
		return f.reply()
	}
	s.ws.noteSeq++
	s.ws.notes = append(s.ws.notes, compact(body))
	return jsonReply(http.StatusAccepted, map[string]string{
		"id":     seqID(notificationIDPrefix, s.ws.noteSeq),
		"status": "accepted",
	})
}
