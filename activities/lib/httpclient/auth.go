package httpclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/tetherflow/tether/activities/lib/failure"
)

// oauthTokens caches the client-credentials token of one Client. The token
// is fetched once, shared by every request and refreshed before it expires
// (oauth2.ReuseTokenSource); invalidate drops it when the API refuses it.
type oauthTokens struct {
	conf     *clientcredentials.Config
	tokenCtx context.Context // carries the token endpoint's HTTP client
	types    ErrorTypes

	mu  sync.Mutex
	src oauth2.TokenSource
}

func newOAuthTokens(a Auth, client *http.Client, types ErrorTypes) *oauthTokens {
	conf := &clientcredentials.Config{
		ClientID:     a.ClientID,
		ClientSecret: a.ClientSecret,
		TokenURL:     a.TokenURL,
		Scopes:       a.Scopes,
	}
	// The token source outlives any one request, so its context is not a
	// request's; the client's own timeout bounds each token request.
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, client)
	return &oauthTokens{conf: conf, tokenCtx: ctx, types: types, src: conf.TokenSource(ctx)}
}

func (o *oauthTokens) source() oauth2.TokenSource {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.src
}

// token returns a valid access token, fetching one when needed.
func (o *oauthTokens) token() (string, error) {
	tok, err := o.source().Token()
	if err != nil {
		return "", o.classify(err)
	}
	return tok.AccessToken, nil
}

// invalidate forgets the cached token if it is still the refused one, so
// concurrent requests that were all refused fetch a single new token.
func (o *oauthTokens) invalidate(refused string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if tok, err := o.src.Token(); err == nil && tok.AccessToken != refused {
		return
	}
	o.src = o.conf.TokenSource(o.tokenCtx)
}

// classify turns a token endpoint failure into a classified error. The
// endpoint's body is left out: it may echo credentials.
func (o *oauthTokens) classify(err error) error {
	tokenURL := RedactURL(o.conf.TokenURL)
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		status := re.Response.StatusCode
		code := ""
		if re.ErrorCode != "" {
			code = fmt.Sprintf(" (%s)", re.ErrorCode)
		}
		msg := fmt.Errorf("oauth2 token from %s: status %d%s", tokenURL, status, code)
		details := ErrorDetails{StatusCode: status, URL: tokenURL}
		switch {
		case status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout:
			return failure.Transient(o.types.Unavailable, msg, details)
		default:
			return failure.Permanent(o.types.Auth, msg, details)
		}
	}
	return failure.Transient(o.types.Unavailable,
		fmt.Errorf("oauth2 token from %s: %w", tokenURL, err),
		ErrorDetails{URL: tokenURL})
}

// authorize sets the credentials header on req and returns the token it
// used (for invalidate), if any.
func (c *Client) authorize(req *http.Request) (string, error) {
	a := c.auth
	switch a.Kind {
	case AuthBearer:
		req.Header.Set("Authorization", "Bearer "+a.Token)
	case AuthAPIKey:
		req.Header.Set(a.Header, a.APIKey)
	case AuthOAuth2:
		tok, err := c.oauth.token()
		if err != nil {
			return "", err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		return tok, nil
	}
	return "", nil
}
