using Microsoft.Extensions.Logging;

namespace Cfn.Coordination.Background;

/// <summary>
/// One running loop in <see cref="LoopHealth"/>: it reports each completed pass, counts and logs what went wrong in a
/// pass or with one record, and says how it ended. Dispose it when the loop was stopped on purpose.
/// </summary>
public sealed class LoopHandle : IDisposable
{
    internal const string PassScope = "pass";
    internal const string ItemScope = "item";

    private readonly LoopHealth _owner;
    private readonly Lock _gate = new();
    private DateTimeOffset _lastPass;
    private string? _lastError;
    private bool _stopped;
    private long _passes;

    internal LoopHandle(LoopHealth owner, string loop, string? instance, TimeSpan? interval, DateTimeOffset started)
    {
        _owner = owner;
        Loop = loop;
        Instance = instance;
        Interval = interval;
        _lastPass = started; // a loop that never completes a pass goes stale three intervals after it started
    }

    /// <summary>The loop's name (the metric label).</summary>
    public string Loop { get; }

    /// <summary>The instance (a coordinator ID), or null.</summary>
    public string? Instance { get; }

    /// <summary>The interval, or null for a loop that sleeps on wake-ups.</summary>
    public TimeSpan? Interval { get; }

    /// <summary>When the last pass completed, or null before the first.</summary>
    public DateTimeOffset? LastPassAt
    {
        get
        {
            lock (_gate)
            {
                return _passes == 0 ? null : _lastPass;
            }
        }
    }

    /// <summary>Passes completed so far.</summary>
    public long Passes
    {
        get
        {
            lock (_gate)
            {
                return _passes;
            }
        }
    }

    /// <summary>A pass finished (whatever it found): the loop is alive.</summary>
    public void PassCompleted()
    {
        var now = _owner.Time.GetUtcNow();
        lock (_gate)
        {
            _lastPass = now;
            _passes++;
        }

        _owner.LastPass.WithLabels(Loop).Set(now.ToUnixTimeMilliseconds() / 1000.0);
    }

    /// <summary>A pass threw something nobody handled: logged, counted; the loop goes on with its next pass.</summary>
    public void PassFailed(Exception error, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(error);
        ArgumentNullException.ThrowIfNull(logger);
        lock (_gate)
        {
            _lastError = Describe(error);
        }

        _owner.Errors.WithLabels(Loop, PassScope).Inc();
        logger.LogError(error, "Background loop pass failed loop={Loop} instance={Instance}: {Error}; the next pass runs as usual",
            Loop, Instance ?? "-", Describe(error));
    }

    /// <summary>One record could not be handled and is skipped (logged with its key and the reason, counted).</summary>
    public void SkipRecord(ILogger logger, string key, string reason) => _owner.SkipRecord(Loop, logger, key, reason);

    /// <summary>Handling one record threw: the record is skipped (see <see cref="SkipRecord"/>).</summary>
    public void RecordFailed(ILogger logger, string key, Exception error) => _owner.RecordFailed(Loop, logger, key, error);

    /// <summary>
    /// Runs one pass: an exception is logged and counted (<see cref="PassFailed"/>) and false returned, except an
    /// <see cref="OperationCanceledException"/> while <paramref name="stopping"/> fires, which is the stop and is rethrown.
    /// </summary>
    public async Task<bool> RunPassAsync(Func<Task> pass, ILogger logger, CancellationToken stopping)
    {
        ArgumentNullException.ThrowIfNull(pass);
        try
        {
            await pass().ConfigureAwait(false);
            PassCompleted();
            return true;
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            throw;
        }
#pragma warning disable CA1031 // the point: no exception of one pass ends the loop
        catch (Exception e)
#pragma warning restore CA1031
        {
            PassFailed(e, logger);
            return false;
        }
    }

    /// <summary>
    /// The loop ended. <paramref name="asked"/>: it was stopped on purpose (or its coordinator was superseded), so it
    /// leaves the registry; otherwise it stays listed as <c>stopped</c> and readiness fails.
    /// </summary>
    public void Ended(bool asked, ILogger logger, string? reason = null)
    {
        ArgumentNullException.ThrowIfNull(logger);
        if (asked)
        {
            Dispose();
            return;
        }

        lock (_gate)
        {
            _stopped = true;
            _lastError = reason ?? "the loop returned";
        }

        logger.LogCritical("Background loop stopped unexpectedly loop={Loop} instance={Instance}: {Reason}; /health/ready fails while it is stopped",
            Loop, Instance ?? "-", reason ?? "the loop returned");
    }

    /// <summary>Removes the loop from the registry (a stop on purpose).</summary>
    public void Dispose() => _owner.Remove(this);

    internal LoopStatus StatusAt(DateTimeOffset now)
    {
        lock (_gate)
        {
            var ago = Math.Max(0, (now - _lastPass).TotalSeconds);
            var state = _stopped ? LoopStatus.Stopped
                : Interval is { } interval && now - _lastPass > interval * LoopHealth.StaleIntervals ? LoopStatus.Stale
                : LoopStatus.Running;
            return new LoopStatus(Loop, Instance, state, Interval?.TotalSeconds, Math.Round(ago, 3), _lastError, Passes);
        }
    }

    private static string Describe(Exception error) => $"{error.GetType().Name}: {error.Message}";
}
