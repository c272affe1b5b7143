/** The machine cannot host the testnet as asked (namespaces, cgroups, tc). */
export class TestnetSetupError extends Error {
  static override name = 'TestnetSetupError'
  override name = 'TestnetSetupError'
}

/** A node did not start, did not join the mesh, or answered a query with an error. */
export class TestnetNodeError extends Error {
  static override name = 'TestnetNodeError'
  override name = 'TestnetNodeError'
}

/** The CPU quota could not be calibrated to the profile's rate. */
export class CalibrationError extends Error {
  static override name = 'CalibrationError'
  override name = 'CalibrationError'
}

/** A workload file or directory is unusable. */
export class WorkloadError extends Error {
  static override name = 'WorkloadError'
  override name = 'WorkloadError'
}
