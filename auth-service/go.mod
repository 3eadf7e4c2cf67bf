module github.com/rampart-go/rampart/auth-service

go 1.26.0

require github.com/rampart-go/rampart/shared v0.0.0

require github.com/golang-jwt/jwt/v5 v5.3.1 // indirect

replace github.com/rampart-go/rampart/shared => ../shared
