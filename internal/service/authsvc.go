package service

import (
	"context"
	"time"

	enrollv1 "github.com/idprotect/enroll/api/enroll/v1"
	"github.com/idprotect/enroll/internal/auth"
	"github.com/idprotect/enroll/internal/enrollment"
)

// AuthServer implements enrollv1.AuthServiceServer.
type AuthServer struct {
	enrollv1.UnimplementedAuthServiceServer
	*base
}

// errBadCredentials is the one answer for an unknown client and a wrong secret, so the
// response does not reveal which client ids exist.
var errBadCredentials = enrollment.Unauthenticatedf("invalid client credentials")

// Token exchanges client credentials for an access token.
func (s *AuthServer) Token(ctx context.Context, req *enrollv1.TokenRequest) (*enrollv1.TokenResponse, error) {
	if req.GetGrantType() != "client_credentials" {
		return nil, enrollment.Invalidf("grant_type must be client_credentials")
	}
	if req.GetClientId() == "" || req.GetClientSecret() == "" {
		return nil, enrollment.Invalidf("client_id and client_secret are required")
	}
	c, err := s.Store.GetClient(ctx, req.GetClientId())
	if err != nil {
		if isNotFoundErr(err) {
			auth.VerifyUnknownClient(req.GetClientSecret())
			return nil, errBadCredentials
		}
		return nil, err
	}
	ok, err := auth.VerifySecret(c.SecretHash, req.GetClientSecret())
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errBadCredentials
	}
	tok, exp, err := s.Tokens.Issue(auth.Principal{ClientID: c.ID, Role: auth.Role(c.Role), PartnerID: c.PartnerID})
	if err != nil {
		return nil, err
	}
	return &enrollv1.TokenResponse{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int64(exp.Sub(s.Clock.Now()).Round(time.Second) / time.Second)}, nil
}

// GetJwks publishes the token verification keys.
func (s *AuthServer) GetJwks(context.Context, *enrollv1.GetJwksRequest) (*enrollv1.GetJwksResponse, error) {
	resp := &enrollv1.GetJwksResponse{}
	for _, k := range s.Tokens.JWKS().Keys {
		resp.Keys = append(resp.Keys, &enrollv1.JsonWebKey{Kty: k.Kty, Crv: k.Crv, X: k.X, Kid: k.Kid, Use: k.Use, Alg: k.Alg})
	}
	return resp, nil
}
