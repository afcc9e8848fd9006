namespace Cfn.Coordination.Hooks;

/// <summary>A snapshot of <see cref="LifecycleHooks.Metrics"/> (SPEC §2.15 <c>getHookMetrics()</c>, plus skips).</summary>
/// <param name="HooksExecuted">Hook scripts run, whatever their outcome.</param>
/// <param name="HooksFailed">Runs that failed: non-zero exit, timeout (killed) or could not start.</param>
/// <param name="HookExecutionTimeMs">Total run time of all runs, in ms.</param>
/// <param name="AverageHookDuration">Average run time in ms (0 before the first run).</param>
/// <param name="HooksSkipped">Hooks not run because the most allowed were already running.</param>
public sealed record HookMetrics(long HooksExecuted, long HooksFailed, long HookExecutionTimeMs, double AverageHookDuration, long HooksSkipped);
