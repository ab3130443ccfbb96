"""The GraphQL documents the services harness sends the webserver: the calls the UI makes."""

LOCATION_STATUS = """
query {
  workspaceOrError {
    ... on Workspace {
      locationEntries { name loadStatus locationOrLoadError { __typename ... on PythonError { message } } }
    }
  }
}
"""
DAEMON_HEALTH = """
query { instance { daemonHealth { allDaemonStatuses { daemonType required lastHeartbeatTime } } } }
"""
SENSOR_TICKS = """
query Ticks($selector: SensorSelector!, $after: Float) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { ticks(afterTimestamp: $after, limit: 100) { id status timestamp } } }
    ... on PythonError { message }
    ... on SensorNotFoundError { message }
  }
}
"""
LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { invalidOutputName }
    ... on UnauthorizedError { message }
  }
}
"""
BACKFILL_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { id status } ... on PythonError { message } }
}
"""
BACKFILLS = """
query { partitionBackfillsOrError(limit: 50) { ... on PartitionBackfills { results { id status } } } }
"""
RUNS = """
query {
  runsOrError(limit: 500) {
    ... on Runs { results { runId jobName status startTime endTime tags { key value } assetSelection { path } } }
  }
}
"""
LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
  }
}
"""
RUN_STATS = """
query Stats($id: ID!) {
  runOrError(runId: $id) {
    ... on Run { runId status startTime endTime creationTime stepStats { stepKey status startTime endTime } }
  }
}
"""
START_SENSOR = """
mutation Start($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { name }
    ... on PythonError { message }
    ... on SensorNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}
"""

START_SCHEDULE = """
mutation Start($selector: ScheduleSelector!) {
  startSchedule(scheduleSelector: $selector) {
    __typename
    ... on ScheduleStateResult { scheduleState { status } }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""
