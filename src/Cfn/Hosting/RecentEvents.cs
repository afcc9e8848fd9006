namespace Cfn.Hosting;

/// <summary>One remembered log entry.</summary>
/// <param name="Timestamp">When it was logged (UTC, ISO 8601).</param>
/// <param name="Level"><c>WARN</c>, <c>ERROR</c>, <c>CRITICAL</c>, or the level of a timeout line.</param>
/// <param name="Category">The logger's category.</param>
/// <param name="Message">The formatted message.</param>
/// <param name="Exception">The exception's type, message and stack, if any.</param>
internal sealed record RecentEvent(string Timestamp, string Level, string Category, string Message, string? Exception);

/// <summary>
/// An <see cref="ILoggerProvider"/> that remembers, in memory, the last <see cref="Capacity"/> WARN and ERROR entries
/// and the last <see cref="Capacity"/> entries mentioning a timeout (any line containing "timeout", any case) for
/// <c>GET /api/coordinator/state</c>, whose output the runbook greps for <c>error\|exception\|timeout</c> (#80, #87).
/// Add it next to the console provider; it costs a lock and a string per warning, nothing for lower levels.
/// </summary>
internal sealed class RecentEvents : ILoggerProvider
{
    /// <summary>Entries kept per list.</summary>
    public const int Capacity = 50;

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

    /// <summary>The last entries mentioning a timeout, oldest first.</summary>
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
        var isError = level >= LogLevel.Warning;
        var exceptionText = exception?.ToString();
        var isTimeout = message.Contains("timeout", StringComparison.OrdinalIgnoreCase) ||
                        (exceptionText?.Contains("timeout", StringComparison.OrdinalIgnoreCase) ?? false);
        if (!isError && !isTimeout)
        {
            return;
        }

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

        // Information stays on: a timeout line may be INFO (e.g. "ACK wait complete … status=timeout").
        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel))
            {
                return;
            }

            ArgumentNullException.ThrowIfNull(formatter);
            owner.Record(logLevel, category, formatter(state, exception), exception);
        }
    }
}
