module github.com/rampart-go/rampart/deploy

go 1.26.0

require (
	github.com/rampart-go/rampart/auth-service v0.0.0
	github.com/rampart-go/rampart/gateway v0.0.0
	github.com/rampart-go/rampart/order-service v0.0.0
	github.com/rampart-go/rampart/shared v0.0.0
	github.com/rampart-go/rampart/user-service v0.0.0
)

replace (
	github.com/rampart-go/rampart/auth-service => ../auth-service
	github.com/rampart-go/rampart/gateway => ../gateway
	github.com/rampart-go/rampart/order-service => ../order-service
	github.com/rampart-go/rampart/shared => ../shared
	github.com/rampart-go/rampart/user-service => ../user-service
)
