using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;

namespace Cfn.Hosting;

/// <summary>
/// The default console format (D11, SPEC §4): one line per event,
/// <c>2025-10-10T12:00:00.123Z INFO  [BlockingCoordination] Waiting for ACKs signalId=… coordinators=a,b timeout=300000</c>.
/// The message is last on the line, so a line that ends with a URL (<c>Calling external API GET http://…</c>) keeps it as
/// its last token for the runbook's <c>awk '{print $NF}'</c>. Only an exception's stack trace goes on following lines.
/// </summary>
internal sealed class TextLogFormatter : ConsoleFormatter
{
    public const string FormatterName = "cfn-text";

    private readonly TimeProvider _time;

    public TextLogFormatter(IOptions<ConsoleFormatterOptions> options)
        : this(TimeProvider.System)
    {
        ArgumentNullException.ThrowIfNull(options);
    }

    internal TextLogFormatter(TimeProvider time)
        : base(FormatterName) => _time = time;

    public override void Write<TState>(in LogEntry<TState> logEntry, IExternalScopeProvider? scopeProvider, TextWriter textWriter)
    {
        ArgumentNullException.ThrowIfNull(textWriter);
        var message = logEntry.Formatter?.Invoke(logEntry.State, logEntry.Exception);
        if (message is null && logEntry.Exception is null)
        {
            return;
        }

        textWriter.Write(FormatLine(_time.GetUtcNow(), logEntry.LogLevel, logEntry.Category, message ?? "", logEntry.Exception));
    }

    /// <summary>The text of one event: the line and, for an exception, its stack trace on the lines after it.</summary>
    internal static string FormatLine(DateTimeOffset at, LogLevel level, string category, string message, Exception? exception)
    {
        // Line breaks inside a message would split one event over several lines and break every grep.
        var text = message.ReplaceLineEndings(" ");
        if (exception is not null && !text.Contains(exception.Message, StringComparison.Ordinal))
        {
            text += (text.Length > 0 ? ": " : "") + exception.GetType().Name + ": " + exception.Message.ReplaceLineEndings(" ");
        }

        var line = $"{at.UtcDateTime:yyyy-MM-dd'T'HH:mm:ss.fff'Z'} {LevelName(level),-5} [{ShortCategory(category)}] {text}\n";
        return exception?.StackTrace is { } stack ? line + stack + "\n" : line;
    }

    internal static string LevelName(LogLevel level) => level switch
    {
        LogLevel.Trace => "TRACE",
        LogLevel.Debug => "DEBUG",
        LogLevel.Information => "INFO",
        LogLevel.Warning => "WARN",
        LogLevel.Error => "ERROR",
        LogLevel.Critical => "FATAL",
        _ => "NONE",
    };

    /// <summary><c>Cfn.Coordination.Acks.AckWaiter</c> → <c>AckWaiter</c>: the component, as the runbook's examples show it.</summary>
    internal static string ShortCategory(string category)
    {
        var dot = category.LastIndexOf('.');
        return dot >= 0 && dot < category.Length - 1 ? category[(dot + 1)..] : category;
    }
}
