using Microsoft.Extensions.Logging;

namespace Cfn.Coordination.Background;

/// <summary>How a <see cref="BackgroundLoop"/> paces its passes.</summary>
internal enum LoopSchedule
{
    /// <summary>
    /// On a non-overlapping periodic timer: a pass on every tick of the interval, a tick missed by a long pass skipped.
    /// </summary>
    FixedRate,

    /// <summary>
    /// A pass, then a sleep of the interval (or the pass's <see cref="LoopPass.NextDelay"/>) that
    /// <see cref="BackgroundLoop.Wake"/> cuts short: the shape of a loop driven by events with a periodic safety net.
    /// </summary>
    AfterPass,
}

/// <summary>What one pass of a <see cref="BackgroundLoop"/> knows, and how it asks for its next sleep.</summary>
internal sealed class LoopPass
{
    internal LoopPass(bool woken, CancellationToken stopping)
    {
        Stopping = stopping;
        Woken = woken;
    }

    /// <summary>Fires when the loop is being stopped.</summary>
    public CancellationToken Stopping { get; }

    /// <summary>
    /// The pass was started by <see cref="BackgroundLoop.Wake"/> or is the first one, rather than by its interval
    /// passing (<see cref="LoopSchedule.AfterPass"/> only; always false on a fixed rate).
    /// </summary>
    public bool Woken { get; }

    /// <summary>How long to sleep before the next pass instead of the interval (<see cref="LoopSchedule.AfterPass"/> only).</summary>
    public TimeSpan? NextDelay { get; set; }
}

/// <summary>
/// The one base every long-running part of a process runs on: <see cref="Start"/>, a guarded pass on a fixed rate or
/// after each sleep (which <see cref="Wake"/> cuts short), <see cref="StopAsync"/> (idempotent; awaits the pass that
/// runs), and the loop's entry in <see cref="LoopHealth"/>: the time of its last completed pass, each pass's exception
/// logged and counted (<c>background_loop_errors_total{scope="pass"}</c>) while the loop goes on, and a loop that
/// stopped without being asked to, or (with an interval) completed no pass for three intervals, failing readiness.
/// </summary>
internal sealed class BackgroundLoop : IAsyncDisposable
{
    private readonly LoopHealth? _health;
    private readonly string _name;
    private readonly string? _instance;
    private readonly TimeSpan _interval;
    private readonly Func<LoopPass, Task> _pass;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly SemaphoreSlim _wake = new(0, 1);
    private readonly CancellationTokenSource _stopping = new();
    private LoopHandle? _handle;
    private Task? _running;
    private int _started;
    private int _disposed;

    /// <summary>
    /// A loop named <paramref name="name"/> (one of <see cref="LoopNames"/>; <paramref name="instance"/> tells instances
    /// apart in readiness) running <paramref name="pass"/> every <paramref name="interval"/>. Nothing runs before
    /// <see cref="Start"/>. With <paramref name="watchInterval"/> off the loop is never stale, only failing once stopped.
    /// </summary>
    public BackgroundLoop(LoopHealth health, string name, string? instance, TimeSpan interval, Func<LoopPass, Task> pass, ILogger logger,
        TimeProvider? time = null, bool watchInterval = true)
    {
        ArgumentNullException.ThrowIfNull(health);
        ArgumentNullException.ThrowIfNull(pass);
        ArgumentNullException.ThrowIfNull(logger);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(interval, TimeSpan.Zero);
        if (!LoopNames.All.Contains(name))
        {
            throw new ArgumentException($"name must be one of {string.Join(", ", LoopNames.All)}", nameof(name));
        }

        _health = health;
        _name = name;
        _instance = instance;
        _interval = interval;
        _pass = pass;
        _logger = logger;
        _time = time ?? health.Time;
        WatchInterval = watchInterval;
    }

    private BackgroundLoop(LoopHandle handle, TimeSpan interval, Func<LoopPass, Task> pass, ILogger logger, TimeProvider time)
    {
        _handle = handle;
        _name = handle.Loop;
        _instance = handle.Instance;
        _interval = interval;
        _pass = pass;
        _logger = logger;
        _time = time;
    }

    /// <summary>How passes are paced (default <see cref="LoopSchedule.FixedRate"/>).</summary>
    public LoopSchedule Schedule { get; init; } = LoopSchedule.FixedRate;

    /// <summary>Run the first pass at <see cref="Start"/> rather than one interval later.</summary>
    public bool PassAtStart { get; init; }

    /// <summary>Checked after each pass: true ends the loop as if stopped on purpose (e.g. its coordinator was superseded).</summary>
    public Func<bool>? EndWhen { get; init; }

    /// <summary>Whether readiness calls the loop stale after three intervals without a completed pass.</summary>
    public bool WatchInterval { get; }

    /// <summary>The loop's name (the metric label).</summary>
    public string Name => _name;

    /// <summary>The instance, or null.</summary>
    public string? Instance => _instance;

    /// <summary>When the last pass completed, or null before the first.</summary>
    public DateTimeOffset? LastPassAt => _handle?.LastPassAt;

    /// <summary>Passes completed so far.</summary>
    public long Passes => _handle?.Passes ?? 0;

    /// <summary>True from <see cref="Start"/> until the loop ends.</summary>
    public bool IsRunning => _running is { IsCompleted: false };

    /// <summary>Completes when the loop has ended (at once if it never started).</summary>
    public Task Completion => _running ?? Task.CompletedTask;

    /// <summary>Starts the loop (a second call, or one after <see cref="StopAsync"/>, does nothing).</summary>
    public void Start()
    {
        if (_stopping.IsCancellationRequested || Interlocked.Exchange(ref _started, 1) == 1)
        {
            return;
        }

        _handle ??= _health!.Register(_name, _instance, WatchInterval ? _interval : null);
        _running = RunLoopAsync(_handle, _stopping.Token);
    }

    /// <summary>Cuts the current sleep short (<see cref="LoopSchedule.AfterPass"/>); several calls before the next pass wake it once.</summary>
    public void Wake()
    {
        if (_wake.CurrentCount > 0)
        {
            return;
        }

        try
        {
            _wake.Release();
        }
        catch (SemaphoreFullException)
        {
            // another wake-up won the race; one is enough
        }
        catch (ObjectDisposedException)
        {
            // stopped
        }
    }

    /// <summary>Stops the loop and waits for the pass that runs; later calls wait for the same end. The loop leaves the registry.</summary>
    public async Task StopAsync()
    {
        if (Volatile.Read(ref _disposed) == 0)
        {
            try
            {
                await _stopping.CancelAsync().ConfigureAwait(false);
            }
            catch (ObjectDisposedException)
            {
                // disposed meanwhile: stopped already
            }
        }

        if (_running is { } running)
        {
            await running.ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Runs the loop until <paramref name="cancellationToken"/> fires (or the loop ends on its own), then stops it: for
    /// parts whose owner holds a token rather than the loop.
    /// </summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        Start();
        var stopped = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using (cancellationToken.Register(() => stopped.TrySetResult()))
        {
            await Task.WhenAny(stopped.Task, Completion).ConfigureAwait(false);
        }

        await DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// Runs <paramref name="pass"/> every <paramref name="period"/> (non-overlapping) for the already registered
    /// <paramref name="handle"/> until <paramref name="stopping"/> fires; see <see cref="RunAsync"/>.
    /// </summary>
    public static Task RunPeriodicAsync(LoopHandle handle, TimeSpan period, TimeProvider time, Func<Task> pass, ILogger logger,
        CancellationToken stopping, bool passAtOnce = false)
    {
        ArgumentNullException.ThrowIfNull(handle);
        ArgumentNullException.ThrowIfNull(pass);
        var loop = new BackgroundLoop(handle, period, _ => pass(), logger, time) { PassAtStart = passAtOnce };
        return loop.RunAsync(stopping);
    }

    /// <inheritdoc cref="StopAsync"/>
    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _stopping.Dispose();
            _wake.Dispose();
        }
    }

    private async Task RunLoopAsync(LoopHandle handle, CancellationToken stopping)
    {
        string? reason = null;
        var ended = false;
        try
        {
            ended = Schedule == LoopSchedule.FixedRate
                ? await RunFixedRateAsync(handle, stopping).ConfigureAwait(false)
                : await RunAfterPassAsync(handle, stopping).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            // stopping
        }
#pragma warning disable CA1031 // only the schedule itself can get here (a pass's exceptions are counted); the handle reports the loop stopped
        catch (Exception e)
#pragma warning restore CA1031
        {
            reason = $"{e.GetType().Name}: {e.Message}";
        }
        finally
        {
            handle.Ended(stopping.IsCancellationRequested || ended, _logger, reason);
        }
    }

    /// <summary>True when <see cref="EndWhen"/> ended it.</summary>
    private async Task<bool> RunFixedRateAsync(LoopHandle handle, CancellationToken stopping)
    {
        using var timer = new PeriodicTimer(_interval, _time);
        if (PassAtStart && await PassEndsAsync(handle, new LoopPass(woken: false, stopping)).ConfigureAwait(false))
        {
            return true;
        }

        while (await timer.WaitForNextTickAsync(stopping).ConfigureAwait(false))
        {
            if (await PassEndsAsync(handle, new LoopPass(woken: false, stopping)).ConfigureAwait(false))
            {
                return true;
            }
        }

        return false;
    }

    private async Task<bool> RunAfterPassAsync(LoopHandle handle, CancellationToken stopping)
    {
        var woken = PassAtStart || await SleepAsync(_interval, stopping).ConfigureAwait(false);
        while (!stopping.IsCancellationRequested)
        {
            var pass = new LoopPass(woken, stopping);
            if (await PassEndsAsync(handle, pass).ConfigureAwait(false))
            {
                return true;
            }

            woken = await SleepAsync(pass.NextDelay ?? _interval, stopping).ConfigureAwait(false);
        }

        return false;
    }

    private async Task<bool> PassEndsAsync(LoopHandle handle, LoopPass pass)
    {
        await handle.RunPassAsync(() => _pass(pass), _logger, pass.Stopping).ConfigureAwait(false);
        return EndWhen?.Invoke() == true;
    }

    /// <summary>Sleeps <paramref name="delay"/> on the loop's clock; true when <see cref="Wake"/> ended it first.</summary>
    private async Task<bool> SleepAsync(TimeSpan delay, CancellationToken stopping)
    {
        using var timeout = new CancellationTokenSource(delay <= TimeSpan.Zero ? TimeSpan.FromTicks(1) : delay, _time);
        using var either = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, stopping);
        try
        {
            await _wake.WaitAsync(either.Token).ConfigureAwait(false);
            return true;
        }
        catch (OperationCanceledException) when (!stopping.IsCancellationRequested)
        {
            return false;
        }
    }
}
