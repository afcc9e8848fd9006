namespace Cfn.Hosting;

/// <summary>One remembered log entry.</summary>
/// <param name="Timestamp">When it was logged (UTC, ISO 8601).</param>
/// <param name="Level"><c>WARN</c>, <c>ERROR</c>, <c>CRITICAL</c>, or the level of an entry logged with a timeout exception.</param>
/// <param name="Category">The logger's category.</param>
/// <param name="Message">The formatted message.</param>
/// <param name="Exception">The exception's type, message and stack, if any.</param>
internal sealed record RecentEvent(string Timestamp, string Level, string Category, string Message, string? Exception);

/// <summary>
/// An <see cref="ILoggerProvider"/> that remembers, in memory, the last <see cref="Capacity"/> WARN and ERROR entries
/// and the last <see cref="Capacity"/> timeout events for <c>GET /api/coordinator/state</c>, whose output the runbook
/// greps for <c>error\|exception\|timeout</c> (#80, #87). A timeout event is a line that starts with one of
/// <see cref="TimeoutEventLiterals"/> (the §4 lines that announce a timeout), or any entry logged with a
/// <see cref="TimeoutException"/> (a <c>RedisTimeoutException</c> included) in its exception chain. Lines that merely
/// mention a timeout setting (<c>Waiting for ACKs … timeout=20000</c>, the start-up <c>config …</c> line) are not events.
/// Add it next to the console provider; it costs a lock and a string per warning, nothing for lower levels without an
/// exception.
/// </summary>
internal sealed class RecentEvents : ILoggerProvider
{
    /// <summary>Entries kept per list.</summary>
    public const int Capacity = 50;

    /// <summary>
    /// The openings of the log lines that report a timeout event (SPEC §4): a wait that timed out, an external call that
    /// timed out, a retry that gave up, a coordinator timeout, an operation timed out, the validation loop's validator
    /// timeout and a heartbeat write that timed out (with <c>reason=timeout</c>).
    /// </summary>
    public static readonly IReadOnlyList<string> TimeoutEventLiterals =
    [
        "ACK wait timeout",
        "external API timeout",
        "Operation timed out",
        "Coordinator timeout detected",
        "Coordinator timeout event",
        "Signal retry exhausted",
        "Validation timeout ",
        "Heartbeat write failed (reason=timeout)",
    ];

    private readonly Queue<RecentEvent> _errors = new();
    private readonly Queue<RecentEvent> _timeouts = new();
    private readonly object _gate = new();
    private readonly TimeProvider _time;

    /// <summary>Creates an empty store; <paramref name="time"/> stamps the entries.</summary>
    public RecentEvents(TimeProvider? time = null) => _time = time ?? TimeProvider.System;

    /// <summary>The last WARN and ERROR entries, oldest first.</summary>
    public IReadOnlyList<RecentEvent> Errors
    {
        get
        {
            lock (_gate)
            {
                return [.. _errors];
            }
        }
    }

    /// <summary>The last timeout events, oldest first.</summary>
    public IReadOnlyList<RecentEvent> Timeouts
    {
        get
        {
            lock (_gate)
            {
                return [.. _timeouts];
            }
        }
    }

    /// <inheritdoc/>
    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    /// <summary>Records one entry (the loggers call this).</summary>
    public void Record(LogLevel level, string category, string message, Exception? exception)
    {
        ArgumentNullException.ThrowIfNull(message);
        var isError = level >= LogLevel.Warning;
        var isTimeout = IsTimeoutEvent(message, exception);
        if (!isError && !isTimeout)
        {
            return;
        }

        var exceptionText = exception?.ToString();
        var entry = new RecentEvent(
            _time.GetUtcNow().ToString("yyyy-MM-ddTHH:mm:ss.fffZ", System.Globalization.CultureInfo.InvariantCulture),
            Label(level), category, message, exceptionText);
        lock (_gate)
        {
            if (isError)
            {
                Add(_errors, entry);
            }

            if (isTimeout)
            {
                Add(_timeouts, entry);
            }
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        // nothing held
    }

    /// <summary>True when the entry reports a timeout event (see the class summary).</summary>
    public static bool IsTimeoutEvent(string message, Exception? exception)
    {
        ArgumentNullException.ThrowIfNull(message);
        foreach (var literal in TimeoutEventLiterals)
        {
            if (message.StartsWith(literal, StringComparison.Ordinal))
            {
                return true;
            }
        }

        return HasTimeoutException(exception, depth: 0);
    }

    private static bool HasTimeoutException(Exception? exception, int depth)
    {
        // Bounded: exception chains are short, and a cycle must not hang the logger.
        if (exception is null || depth > 8)
        {
            return false;
        }

        if (exception is TimeoutException)
        {
            return true;
        }

        if (exception is AggregateException aggregate)
        {
            return aggregate.InnerExceptions.Any(inner => HasTimeoutException(inner, depth + 1));
        }

        return HasTimeoutException(exception.InnerException, depth + 1);
    }

    private static void Add(Queue<RecentEvent> queue, RecentEvent entry)
    {
        queue.Enqueue(entry);
        while (queue.Count > Capacity)
        {
            queue.Dequeue();
        }
    }

    private static string Label(LogLevel level) => level switch
    {
        LogLevel.Trace => "TRACE",
        LogLevel.Debug => "DEBUG",
        LogLevel.Information => "INFO",
        LogLevel.Warning => "WARN",
        LogLevel.Error => "ERROR",
        LogLevel.Critical => "CRITICAL",
        _ => level.ToString().ToUpperInvariant(),
    };

    private sealed class Logger(RecentEvents owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        // Information stays on: an entry logged with a TimeoutException is kept whatever its level.
        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            // Below WARN only an exception can make an entry worth keeping (the literals are all WARN or ERROR lines):
            // skip the formatting of every ordinary INFO line.
            if (!IsEnabled(logLevel) || (logLevel < LogLevel.Warning && exception is null))
            {
                return;
            }

            ArgumentNullException.ThrowIfNull(formatter);
            owner.Record(logLevel, category, formatter(state, exception), exception);
        }
    }
}
