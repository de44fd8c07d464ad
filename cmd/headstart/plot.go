package main

import (
	"github.com/headstart-dev/headstart/forecasting"
)

func writePlots(dir, trace string, reports []forecasting.MethodReport) error { return nil }
