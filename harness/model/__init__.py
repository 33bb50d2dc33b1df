"""The plain data every other layer speaks: Scenario, ResultRecord (records), Observation, the one
failure-class
vocabulary (classes) and the one exception tree (errors). Imports nothing of the harness but itself."""
