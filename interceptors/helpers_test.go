package interceptors_test

import "go.temporal.io/sdk/activity"

func activityOptions(name string) activity.RegisterOptions {
	return activity.RegisterOptions{Name: name}
}
